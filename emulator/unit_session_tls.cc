// The TLS session: BasicUnitSession over an Asio SSL stream (see
// emulator/unit_tls.h). The only translation unit besides unit_tls.cc that
// includes the Asio SSL headers.
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "emulator/unit_session.h"
#include "emulator/unit_session_inl.h"

namespace hsmsim::emulator {

namespace session_internal {

bool IsPlaintextPeer(const boost::system::error_code& ec) {
  return ec.category() == boost::asio::error::get_ssl_category() &&
         ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_WRONG_VERSION_NUMBER;
}

}  // namespace session_internal

using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;
template class BasicUnitSession<TlsStream>;

// Declared in unit_tls.cc, its only caller.
std::shared_ptr<UnitSession> MakeTlsSessionOn(boost::asio::ip::tcp::socket socket,
                                              boost::asio::ssl::context& context,
                                              boost::asio::thread_pool& pool,
                                              RequestDispatcher& dispatcher, FrameBudget& budget,
                                              SessionConfig config);

std::shared_ptr<UnitSession> MakeTlsSessionOn(boost::asio::ip::tcp::socket socket,
                                              boost::asio::ssl::context& context,
                                              boost::asio::thread_pool& pool,
                                              RequestDispatcher& dispatcher, FrameBudget& budget,
                                              SessionConfig config) {
  return std::make_shared<BasicUnitSession<TlsStream>>(TlsStream(std::move(socket), context), pool,
                                                       dispatcher, budget, config);
}

}  // namespace hsmsim::emulator
