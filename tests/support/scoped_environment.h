// ScopedEnvironment: changes to this process's environment, undone when it
// goes out of scope.
#ifndef HSMSIM_TESTS_SUPPORT_SCOPED_ENVIRONMENT_H_
#define HSMSIM_TESTS_SUPPORT_SCOPED_ENVIRONMENT_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hsmsim::test_support {

// ScopedEnvironment sets and clears variables of this process (and so of
// every child started later) and restores their earlier values, in reverse
// order, when destroyed. Not thread-safe: setenv is not.
class ScopedEnvironment {
 public:
  ScopedEnvironment() = default;
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;
  ~ScopedEnvironment();

  void Set(const std::string& name, const std::string& value);
  void Unset(const std::string& name);

 private:
  void Save(const std::string& name);
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

}  // namespace hsmsim::test_support

#endif  // HSMSIM_TESTS_SUPPORT_SCOPED_ENVIRONMENT_H_
