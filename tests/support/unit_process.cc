#include "tests/support/unit_process.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "common/check.h"
#include "common/str_cat.h"

namespace hsmsim::test_support {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

UnitProcess::UnitProcess(UnitProcessOptions options) {
  static std::atomic<int> counter{0};
  const int n = ++counter;
  port_file_ = StrCat(options.work_dir, "/port-", n);
  output_path_ = StrCat(options.work_dir, "/stderr-", n);
  std::vector<std::string> argv = {options.binary, "--listen",    "127.0.0.1:0",    "--port-file",
                                   port_file_,     "--state-dir", options.state_dir};
  argv.insert(argv.end(), options.args.begin(), options.args.end());
  ChildOptions child;
  child.output_path = output_path_;
  child.die_with_parent = options.die_with_parent;
  child.stop_grace = options.stop_grace;
  auto started = ChildProcess::Start(argv, child);
  HSMSIM_CHECK(started.ok());
  child_ = std::move(*started);
}

std::optional<uint16_t> UnitProcess::WaitForPort() {
  const auto deadline = std::chrono::steady_clock::now() + kUnitWaitLimit;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string text = ReadWholeFile(port_file_);
    if (!text.empty()) return static_cast<uint16_t>(std::stoi(text));
    if (!child_->Running()) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

long UnitProcess::StatusKilobytes(std::string_view field) const {
  std::string status = ReadWholeFile(StrCat("/proc/", child_->pid(), "/status"));
  size_t at = status.find(StrCat(field, ":"));
  if (at == std::string::npos) return -1;
  return std::strtol(status.c_str() + at + field.size() + 1, nullptr, 10);
}

std::string UnitProcess::Stderr() const { return ReadWholeFile(output_path_); }

}  // namespace hsmsim::test_support
