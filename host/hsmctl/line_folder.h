// LineFolder: the lines hsmctl says during a long command, each printed
// once (see the class comment).
#ifndef HSMSIM_HOST_HSMCTL_LINE_FOLDER_H_
#define HSMSIM_HOST_HSMCTL_LINE_FOLDER_H_

#include <cstdint>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hsmsim::hsmctl {

// LineFolder prints the lines hsmctl says during a long command (a
// rotation's, a key creation's) as they come, each flushed, and prints a
// line said before only once, with a count: a run of identical lines ends
// with "PREFIX(the line above N more time(s))"; a line said again later,
// after other lines, is counted and, at Finish, summed up as
// "PREFIX(said N more time(s): LINE)". Finish runs on destruction too. Not
// thread-safe: one thread says lines.
class LineFolder {
 public:
  // `out` outlives the folder; `prefix` goes before every line ("hsmctl: ").
  explicit LineFolder(std::ostream& out, std::string prefix = "");
  ~LineFolder();
  LineFolder(const LineFolder&) = delete;
  LineFolder& operator=(const LineFolder&) = delete;

  void Say(std::string_view line);
  // Finish ends a run of repeats and sums up the lines said again later.
  void Finish();

 private:
  void EndRun();

  std::ostream& out_;
  std::string prefix_;
  std::string last_;  // the line printed last
  int64_t run_ = 0;   // repeats of last_ right after it, not yet said
  std::vector<std::pair<std::string, int64_t>> later_;  // lines said again later, in order
  std::set<std::string> said_;
};

}  // namespace hsmsim::hsmctl

#endif  // HSMSIM_HOST_HSMCTL_LINE_FOLDER_H_
