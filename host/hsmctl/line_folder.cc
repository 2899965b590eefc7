#include "host/hsmctl/line_folder.h"

#include <algorithm>

namespace hsmsim::hsmctl {

LineFolder::LineFolder(std::ostream& out, std::string prefix)
    : out_(out), prefix_(std::move(prefix)) {}

LineFolder::~LineFolder() { Finish(); }

void LineFolder::Say(std::string_view line) {
  if (!said_.empty() && line == last_) {
    ++run_;
    return;
  }
  EndRun();
  if (said_.contains(std::string(line))) {
    auto it = std::find_if(later_.begin(), later_.end(),
                           [&](const auto& entry) { return entry.first == line; });
    if (it == later_.end()) {
      later_.emplace_back(std::string(line), 1);
    } else {
      ++it->second;
    }
    return;
  }
  out_ << prefix_ << line << std::endl;  // flushed: an interrupted run keeps it
  said_.insert(std::string(line));
  last_ = std::string(line);
}

void LineFolder::EndRun() {
  if (run_ > 0) out_ << prefix_ << "(the line above " << run_ << " more time(s))" << std::endl;
  run_ = 0;
}

void LineFolder::Finish() {
  EndRun();
  for (const auto& [line, count] : later_) {
    out_ << prefix_ << "(said " << count << " more time(s): " << line << ")" << std::endl;
  }
  later_.clear();
}

}  // namespace hsmsim::hsmctl
