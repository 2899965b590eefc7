#include "host/unit_client.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/status.h"
#include "common/str_cat.h"

namespace hsmsim::host {
namespace {

using ::testing::HasSubstr;

// A loopback port nobody listens on: bound, then closed.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(UnitClientTest, UnreachableUnitNamesTheEndpoint) {
  const std::string endpoint = StrCat("127.0.0.1:", ClosedPort());
  UnitClientOptions options;
  options.timeout = std::chrono::milliseconds(2000);
  options.retry_backoff = std::chrono::milliseconds(10);
  auto client = UnitClient::Create("u2", endpoint, options);
  ASSERT_TRUE(client.ok());
  auto info = (*client)->GetInfo();
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(IsUnreachable(info.status()));
  EXPECT_EQ(std::string(info.status().message()),
            StrCat("unit u2 at ", endpoint, ": connection refused"));
}

TEST(UnitClientTest, BadEndpointIsRefused) {
  EXPECT_EQ(ReasonOf(UnitClient::Create("u1", "localhost").status()), "BAD_ENDPOINT");
}

TEST(UnitClientTest, OnlyReadsAndWorkloadOpsAreIdempotent) {
  v1::Request r;
  r.mutable_get_info();
  EXPECT_TRUE(UnitClient::IsIdempotent(r));
  r.mutable_unwrap_key();
  EXPECT_TRUE(UnitClient::IsIdempotent(r));
  r.mutable_reencrypt_batch();
  EXPECT_TRUE(UnitClient::IsIdempotent(r));
  r.mutable_signed_command();
  EXPECT_FALSE(UnitClient::IsIdempotent(r));
  r.mutable_generate_key();
  EXPECT_FALSE(UnitClient::IsIdempotent(r));
}

// A server that accepts and never answers: the request times out.
TEST(UnitClientTest, SilentUnitTimesOut) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  UnitClientOptions options;
  options.timeout = std::chrono::milliseconds(200);
  options.idempotent_attempts = 1;
  auto client = UnitClient::Create("u3", StrCat("127.0.0.1:", ntohs(addr.sin_port)), options);
  ASSERT_TRUE(client.ok());
  v1::Request request;
  request.mutable_signed_command()->set_command("x");
  auto response = (*client)->Call(request);
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReasonOf(response.status()), kUnitTimeout);
  EXPECT_THAT(std::string(response.status().message()),
              HasSubstr("may or may not have been applied"));
  close(fd);
}

}  // namespace
}  // namespace hsmsim::host
