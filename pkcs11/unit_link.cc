#include "pkcs11/unit_link.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

#include "common/reasons.h"
#include "common/secret_bytes.h"
#include "common/status.h"
#include "common/str_cat.h"
#include "proto/wire/frame_codec.h"

namespace hsmsim::pkcs11 {
namespace {

// Responses above this size are refused: the largest key-use answer is
// well below it.
constexpr size_t kMaxResponseBytes = size_t{64} << 20;

}  // namespace

UnitLink::~UnitLink() {
  if (fd_ >= 0) ::close(fd_);
}

void UnitLink::Forget() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status UnitLink::Fail(absl::Status status) {
  Forget();
  return status;
}

absl::Status UnitLink::Connect() {
  const size_t colon = endpoint_.rfind(':');
  if (colon == std::string::npos) {
    return Error(absl::StatusCode::kUnavailable, reason::kUnitUnreachable,
                 StrCat("unit ", name_, ": endpoint '", endpoint_, "' is not HOST:PORT"));
  }
  const std::string host = endpoint_.substr(0, colon);
  const std::string port = endpoint_.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return Error(absl::StatusCode::kUnavailable, reason::kUnitUnreachable,
                 StrCat("unit ", name_, " at ", endpoint_, ": cannot resolve the address"));
  }
  int fd = ::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int rc = fd < 0 ? -1 : ::connect(fd, found->ai_addr, found->ai_addrlen);
  const int err = errno;
  freeaddrinfo(found);
  if (rc != 0) {
    if (fd >= 0) ::close(fd);
    return Error(absl::StatusCode::kUnavailable, reason::kUnitUnreachable,
                 StrCat("unit ", name_, " at ", endpoint_, ": ", std::strerror(err)));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fd_ = fd;
  return absl::OkStatus();
}

absl::Status UnitLink::WriteAll(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Fail(
          Error(absl::StatusCode::kUnavailable, reason::kUnitUnreachable,
                StrCat("unit ", name_, " at ", endpoint_, ": send: ", std::strerror(errno))));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status UnitLink::ReadExact(uint8_t* out, size_t size) {
  size_t done = 0;
  while (done < size) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms_);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      return Fail(Error(absl::StatusCode::kDeadlineExceeded, reason::kUnitTimeout,
                        StrCat("unit ", name_, " at ", endpoint_, " did not answer within ",
                               timeout_ms_, " ms")));
    }
    const ssize_t n = ready < 0 ? -1 : ::recv(fd_, out + done, size - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Fail(Error(absl::StatusCode::kUnavailable, reason::kUnitUnreachable,
                        StrCat("unit ", name_, " at ", endpoint_, ": the connection closed")));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Response> UnitLink::Call(v1::Request request) {
  // The clear key of an ImportKey is wiped, in the request (on every way
  // out: locals go before the parameter) and in its frame, before they are
  // freed.
  struct WipeImportedKey {
    v1::Request& r;
    ~WipeImportedKey() {
      if (r.has_import_key()) WipeString(r.mutable_import_key()->mutable_key_value());
    }
  } wipe{request};
  if (fd_ < 0) HSMSIM_RETURN_IF_ERROR(Connect());
  const uint64_t id = next_id_++;
  request.set_id(id);
  std::string frame = wire::EncodeFrame(request);
  const absl::Status written = WriteAll(frame);
  if (request.has_import_key()) WipeString(&frame);
  HSMSIM_RETURN_IF_ERROR(written);
  while (true) {
    uint8_t prefix[wire::kMaxVarint32Bytes];
    size_t have = 0;
    std::optional<wire::FrameHeader> header;
    while (!header.has_value()) {
      if (have == sizeof(prefix)) break;
      HSMSIM_RETURN_IF_ERROR(ReadExact(prefix + have, 1));
      ++have;
      auto decoded = wire::DecodeFrameHeader(absl::MakeConstSpan(prefix, have), kMaxResponseBytes);
      if (!decoded.ok()) return Fail(decoded.status());
      header = *decoded;
    }
    if (!header.has_value()) {
      return Fail(Error(absl::StatusCode::kInvalidArgument, reason::kMalformedFrame,
                        StrCat("unit ", name_, " sent a bad frame length")));
    }
    std::string body(header->body_size, '\0');
    HSMSIM_RETURN_IF_ERROR(ReadExact(reinterpret_cast<uint8_t*>(body.data()), body.size()));
    v1::Response response;
    absl::Status parsed = wire::ParseFrameBody(
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(body.data()), body.size()), &response);
    if (!parsed.ok()) return Fail(parsed);
    // A frame with another id answers a request that timed out earlier.
    if (response.id() == id) return response;
  }
}

}  // namespace hsmsim::pkcs11
