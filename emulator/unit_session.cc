// The plaintext session: BasicUnitSession over a TCP socket. The TLS one is
// instantiated in unit_session_tls.cc, so only that file pays for the
// Asio SSL headers.
#include "emulator/unit_session.h"

#include "emulator/unit_session_inl.h"

namespace hsmsim::emulator {

template class BasicUnitSession<boost::asio::ip::tcp::socket>;

}  // namespace hsmsim::emulator
