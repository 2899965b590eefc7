// Checks common/reasons.inc against the production code and the documents:
// every reason used is declared, every declared reason is used, and
// docs/protocol.md's reason table, docs/cli.md's reason table and its
// exit-code tables say what the declarations say.
//
// The source scan finds "reason positions" the way
// scripts/dev/use_reason_constants.py does: the `reason` parameter of any
// function declared with one (Error, Precondition, OpenSslError, ...), an
// assignment to a variable named *reason, a comparison with ReasonOf(...),
// .reason() or such a variable, and a constant kFooBar = "FOO_BAR".
#include "common/reasons.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/status.h"

namespace hsmsim::reason {
namespace {

namespace fs = std::filesystem;

const char* const kProductionDirs[] = {"common", "crypto",     "firmware", "emulator",
                                       "host",   "proto/wire", "pkcs11"};

std::string SourceDir() { return HSMSIM_SOURCE_DIR; }

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string ConstantOf(std::string_view name) {
  std::string out = "k";
  bool start = true;
  for (char c : name) {
    if (c == '_') {
      start = true;
      continue;
    }
    out += start ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    start = false;
  }
  return out;
}

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool IsReasonShaped(std::string_view s) {
  static const std::regex kShape("[A-Z][A-Z0-9]*(_[A-Z0-9]+)*");
  return std::regex_match(s.begin(), s.end(), kShape);
}

// Mask blanks comments, raw strings and character literals, keeping offsets
// and string literals.
std::string Mask(const std::string& text) {
  std::string out = text;
  const size_t n = text.size();
  auto blank = [&](size_t from, size_t to) {
    for (size_t k = from; k < to && k < n; ++k) {
      if (out[k] != '\n') out[k] = ' ';
    }
  };
  size_t i = 0;
  while (i < n) {
    if (text.compare(i, 2, "//") == 0) {
      size_t j = text.find('\n', i);
      j = j == std::string::npos ? n : j;
      blank(i, j);
      i = j;
    } else if (text.compare(i, 2, "/*") == 0) {
      size_t j = text.find("*/", i + 2);
      j = j == std::string::npos ? n : j + 2;
      blank(i, j);
      i = j;
    } else if (text.compare(i, 2, "R\"") == 0 && (i == 0 || !std::isalnum(text[i - 1]))) {
      const size_t open = text.find('(', i);
      const std::string close = ")" + text.substr(i + 2, open - i - 2) + "\"";
      size_t j = text.find(close, open);
      j = j == std::string::npos ? n : j + close.size();
      blank(i, j);
      i = j;
    } else if (text[i] == '"') {
      size_t j = i + 1;
      while (j < n && text[j] != '"') j += text[j] == '\\' ? 2 : 1;
      i = j + 1;
    } else if (text[i] == '\'' && !(i > 0 && std::isalnum(text[i - 1]))) {
      size_t j = i + 1;
      while (j < n && text[j] != '\'') j += text[j] == '\\' ? 2 : 1;
      blank(i + 1, j);
      i = j + 1;
    } else {
      ++i;
    }
  }
  return out;
}

// Arguments returns the [begin, end) ranges of the arguments of the call
// whose '(' is at `open`, or nullopt when it does not close before a ';'.
std::optional<std::vector<std::pair<size_t, size_t>>> Arguments(const std::string& m, size_t open) {
  std::vector<std::pair<size_t, size_t>> args;
  int depth = 0;
  size_t start = open + 1;
  for (size_t i = open; i < m.size(); ++i) {
    const char c = m[i];
    if (c == '"') {
      size_t j = i + 1;
      while (j < m.size() && m[j] != '"') j += m[j] == '\\' ? 2 : 1;
      i = j;
    } else if (c == '(' || c == '[' || c == '{') {
      ++depth;
    } else if (c == ')' || c == ']' || c == '}') {
      if (--depth == 0) {
        args.emplace_back(start, i);
        return args;
      }
    } else if (c == ',' && depth == 1) {
      args.emplace_back(start, i);
      start = i + 1;
    } else if (c == ';' && depth <= 1) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// A reason named at a reason position: a literal "FOO" or a constant reason::kFoo.
struct Site {
  std::string file;
  int line = 0;
  std::string reason;  // the literal's text, or the name of the constant's reason
  bool literal = false;
  std::string code;  // "kInvalidArgument" when the call site shows it, else ""
};

class SourceScan {
 public:
  SourceScan() {
    for (const Info& info : AllReasons()) by_constant_[ConstantOf(info.name)] = info.name;
    for (const char* dir : kProductionDirs) {
      for (const auto& entry : fs::recursive_directory_iterator(fs::path(SourceDir()) / dir)) {
        const std::string ext = entry.path().extension().string();
        if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc")) continue;
        const std::string rel = fs::relative(entry.path(), SourceDir()).string();
        if (rel == "common/reasons.h" || rel == "common/reasons.cc") continue;
        texts_[rel] = ReadFile(entry.path());
        masked_[rel] = Mask(texts_[rel]);
      }
    }
    FindReasonFunctions();
    for (const auto& [file, m] : masked_) ScanFile(file, m);
  }

  const std::vector<Site>& sites() const { return sites_; }
  const std::map<std::string, std::string>& masked() const { return masked_; }
  const std::map<std::string, std::pair<size_t, std::string>>& functions() const {
    return functions_;
  }

 private:
  void FindReasonFunctions() {
    static const std::regex kDecl(R"(\b([A-Za-z_]\w*)\s*\(([^()]*)\)\s*(const\s*)?([{;]))");
    static const std::regex kReasonParam(
        R"((std::)?string_view\s+reason$|std::string\s*&\s*reason$|char\s*\*\s*reason$)");
    static const std::regex kFixedCode(R"(Error\(\s*(absl::)?StatusCode::(k\w+)\s*,\s*reason\s*,)");
    for (const auto& [file, m] : masked_) {
      for (auto it = std::sregex_iterator(m.begin(), m.end(), kDecl); it != std::sregex_iterator();
           ++it) {
        const std::smatch& d = *it;
        std::vector<std::string> params;
        std::stringstream ss(d[2].str());
        for (std::string p; std::getline(ss, p, ',');) params.push_back(p);
        for (size_t i = 0; i < params.size(); ++i) {
          std::string p = std::regex_replace(params[i], std::regex(R"(\s+)"), " ");
          p = std::regex_replace(p, std::regex(R"(^ |const | $)"), "");
          if (!std::regex_search(p, kReasonParam)) continue;
          std::string code;
          if (d[4] == "{") {
            const size_t body = d.position(0) + d.length(0);
            const std::string head = m.substr(body, 400);
            std::smatch c;
            if (std::regex_search(head, c, kFixedCode)) code = c[2];
          }
          auto [pos, inserted] = functions_.emplace(d[1].str(), std::make_pair(i, code));
          if (!inserted && pos->second.second.empty()) pos->second = {i, code};
        }
      }
    }
  }

  int LineOf(const std::string& file, size_t offset) const {
    const std::string& t = texts_.at(file);
    return 1 + static_cast<int>(std::count(t.begin(), t.begin() + offset, '\n'));
  }

  // AddIn records every literal and reason:: constant in m[from, to).
  void AddIn(const std::string& file, const std::string& m, size_t from, size_t to,
             const std::string& code) {
    static const std::regex kToken(R"re("([A-Z][A-Z0-9_]*)"|\breason::(k\w+))re");
    const std::string part = m.substr(from, to - from);
    for (auto it = std::sregex_iterator(part.begin(), part.end(), kToken);
         it != std::sregex_iterator(); ++it) {
      const size_t at = from + it->position(0);
      if (!seen_.insert({file, at}).second) continue;
      Site s{file, LineOf(file, at), "", false, code};
      if ((*it)[1].matched) {
        if (!IsReasonShaped((*it)[1].str())) continue;
        s.reason = (*it)[1];
        s.literal = true;
      } else {
        auto c = by_constant_.find((*it)[2]);
        s.reason = c == by_constant_.end() ? "reason::" + (*it)[2].str() : c->second;
      }
      sites_.push_back(std::move(s));
    }
  }

  void ScanFile(const std::string& file, const std::string& m) {
    static const std::regex kCode(R"(^\s*(absl::)?StatusCode::(k\w+)\s*$)");
    for (const auto& [name, fn] : functions_) {
      const auto& [index, fixed_code] = fn;
      for (size_t at = m.find(name); at != std::string::npos; at = m.find(name, at + 1)) {
        if (at > 0 && (IsWordChar(m[at - 1]) || m[at - 1] == '.')) continue;
        size_t open = at + name.size();
        while (open < m.size() && std::isspace(static_cast<unsigned char>(m[open]))) ++open;
        if (open >= m.size() || m[open] != '(') continue;
        auto args = Arguments(m, open);
        if (!args.has_value() || args->size() <= index) continue;
        std::string code = fixed_code;
        if (name == "Error" && index == 1) {
          const auto [b, e] = (*args)[0];
          const std::string first = m.substr(b, e - b);
          std::smatch c;
          code = std::regex_match(first, c, kCode) ? c[2].str() : "";
        }
        AddIn(file, m, (*args)[index].first, (*args)[index].second, code);
      }
    }
    // Assignments: reason = "FOO"; (not ==)
    static const std::regex kAssign(R"(\b\w*reason\s*=(?!=))");
    for (auto it = std::sregex_iterator(m.begin(), m.end(), kAssign); it != std::sregex_iterator();
         ++it) {
      const size_t from = it->position(0) + it->length(0);
      AddIn(file, m, from, std::min(m.find(';', from), m.size()), "");
    }
    // Comparisons with ReasonOf(...), x.reason() or a *reason variable.
    std::vector<std::pair<size_t, size_t>> subjects;
    for (const std::string call : {"ReasonOf(", ".reason("}) {
      for (size_t at = m.find(call); at != std::string::npos; at = m.find(call, at + 1)) {
        auto args = Arguments(m, at + call.size() - 1);
        if (args.has_value()) subjects.emplace_back(at, args->back().second + 1);
      }
    }
    static const std::regex kReasonWord(R"(\b\w*reason\b)");
    for (auto it = std::sregex_iterator(m.begin(), m.end(), kReasonWord);
         it != std::sregex_iterator(); ++it) {
      subjects.emplace_back(it->position(0), it->position(0) + it->length(0));
    }
    static const std::regex kAfter(R"re(^\s*[!=]=\s*("[A-Z][A-Z0-9_]*"|reason::k\w+))re");
    static const std::regex kBefore(R"re(("[A-Z][A-Z0-9_]*"|reason::k\w+)\s*[!=]=\s*$)re");
    for (const auto& [b, e] : subjects) {
      const std::string after = m.substr(e, 120);
      std::smatch a;
      if (std::regex_search(after, a, kAfter)) {
        AddIn(file, m, e + a.position(1), e + a.position(1) + a.length(1), "");
      }
      const size_t from = b > 120 ? b - 120 : 0;
      const std::string before = m.substr(from, b - from);
      if (std::regex_search(before, a, kBefore)) {
        AddIn(file, m, from + a.position(1), from + a.position(1) + a.length(1), "");
      }
    }
    // Constants: kFooBar[] = "FOO_BAR" or kFooBar = "FOO_BAR".
    static const std::regex kConstant(R"re(\b(k\w+)(\[\])?\s*=\s*"([A-Z][A-Z0-9_]*)")re");
    for (auto it = std::sregex_iterator(m.begin(), m.end(), kConstant);
         it != std::sregex_iterator(); ++it) {
      if ((*it)[1] != ConstantOf((*it)[3].str())) continue;
      const size_t from = it->position(3) - 1;
      AddIn(file, m, from, from + it->length(3) + 2, "");
    }
  }

  std::map<std::string, std::string> by_constant_;
  std::map<std::string, std::string> texts_;
  std::map<std::string, std::string> masked_;
  std::map<std::string, std::pair<size_t, std::string>> functions_;
  std::set<std::pair<std::string, size_t>> seen_;
  std::vector<Site> sites_;
};

const SourceScan& Scan() {
  static const SourceScan* scan = new SourceScan();
  return *scan;
}

std::string Where(const Site& s) { return s.file + ":" + std::to_string(s.line); }

int CodeNumber(const std::string& name) {
  static const std::map<std::string, int> kCodes = {
      {"kCancelled", 1},        {"kUnknown", 2},           {"kInvalidArgument", 3},
      {"kDeadlineExceeded", 4}, {"kNotFound", 5},          {"kAlreadyExists", 6},
      {"kPermissionDenied", 7}, {"kResourceExhausted", 8}, {"kFailedPrecondition", 9},
      {"kAborted", 10},         {"kOutOfRange", 11},       {"kUnimplemented", 12},
      {"kInternal", 13},        {"kUnavailable", 14},      {"kDataLoss", 15},
      {"kUnauthenticated", 16}};
  auto it = kCodes.find(name);
  return it == kCodes.end() ? -1 : it->second;
}

// Section returns the lines of `doc` from the heading `heading` to the next
// heading of the same or a higher level.
std::vector<std::string> Section(const std::string& doc, const std::string& heading) {
  std::vector<std::string> out;
  std::stringstream ss(ReadFile(fs::path(SourceDir()) / doc));
  const size_t level = heading.find(' ');
  bool in = false;
  for (std::string line; std::getline(ss, line);) {
    if (in && line.starts_with("#")) {
      const size_t l = line.find(' ');
      if (l != std::string::npos && l <= level) break;
    }
    if (line == heading) in = true;
    if (in) out.push_back(line);
  }
  return out;
}

// Cells splits a Markdown table row into trimmed cells.
std::vector<std::string> Cells(const std::string& row) {
  std::vector<std::string> out;
  if (!row.starts_with("|")) return out;
  std::stringstream ss(row.substr(1));
  for (std::string cell; std::getline(ss, cell, '|');) {
    const size_t b = cell.find_first_not_of(' ');
    const size_t e = cell.find_last_not_of(' ');
    out.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
  }
  return out;
}

std::string Unquote(const std::string& cell) {
  if (cell.size() >= 2 && cell.front() == '`' && cell.back() == '`') {
    return cell.substr(1, cell.size() - 2);
  }
  return cell;
}

// Backticked returns the declared reasons named `LIKE_THIS` in `text`.
std::vector<std::string> Backticked(const std::string& text) {
  static const std::regex kTicked("`([A-Z][A-Z0-9_]*)`");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), kTicked);
       it != std::sregex_iterator(); ++it) {
    if (Find((*it)[1].str()) != nullptr) out.push_back((*it)[1]);
  }
  return out;
}

TEST(ReasonsTest, LookUp) {
  EXPECT_EQ(kNoSuchKey, "NO_SUCH_KEY");
  EXPECT_EQ(ExitClassOf(kNoSuchKey), ExitClass::kBadInput);
  EXPECT_EQ(ExitClassOf(kUnitTimeout), ExitClass::kUnreachable);
  EXPECT_EQ(ExitClassOf(kUnitUnreachable), ExitClass::kUnreachable);
  EXPECT_EQ(ExitClassOf(kNoUnitAvailable), ExitClass::kRefused);
  EXPECT_EQ(ExitClassOf("SOMETHING_A_NEWER_UNIT_SAYS"), std::nullopt);
  ASSERT_NE(Find(kBadPublicKey), nullptr);
  EXPECT_EQ(Find(kBadPublicKey)->side, Side::kUnit);
  EXPECT_GT(AllReasons().size(), 100u);
  for (const Info& info : AllReasons()) {
    EXPECT_TRUE(IsReasonShaped(info.name)) << info.name;
    EXPECT_FALSE(info.meaning.empty()) << info.name;
  }
}

TEST(ReasonsTest, StatusWithoutReasonIsUnspecified) {
  EXPECT_EQ(ReasonOf(absl::InternalError("x")), kUnspecified);
}

TEST(ReasonsTest, ScanFindsTheReasonHelpers) {
  // Guards the scan itself: these helpers take a reason today.
  for (const char* fn : {"Error", "OpenSslError"}) {
    EXPECT_TRUE(Scan().functions().contains(fn)) << fn;
  }
  EXPECT_GT(Scan().sites().size(), 200u);
}

TEST(ReasonsTest, EveryReasonUsedInProductionCodeIsDeclared) {
  for (const Site& s : Scan().sites()) {
    EXPECT_NE(Find(s.reason), nullptr)
        << Where(s) << ": reason " << s.reason
        << " is not declared in common/reasons.inc; declare it there with its exit class";
  }
}

TEST(ReasonsTest, CallSitesNameConstantsNotLiterals) {
  for (const Site& s : Scan().sites()) {
    EXPECT_FALSE(s.literal) << Where(s) << ": \"" << s.reason
                            << "\" written as a literal; use reason::" << ConstantOf(s.reason)
                            << " (scripts/dev/use_reason_constants.py does it)";
  }
}

TEST(ReasonsTest, EveryDeclaredReasonIsUsedInProductionCode) {
  std::set<std::string> used;
  for (const Site& s : Scan().sites()) used.insert(s.reason);
  // A constant used anywhere else (a table, a return statement) counts too.
  for (const auto& [file, m] : Scan().masked()) {
    for (const Info& info : AllReasons()) {
      if (m.find("reason::" + ConstantOf(info.name)) != std::string::npos) {
        used.insert(std::string(info.name));
      }
    }
  }
  for (const Info& info : AllReasons()) {
    EXPECT_TRUE(used.contains(std::string(info.name)))
        << info.name << " is declared in common/reasons.inc but no production code raises it";
  }
}

// The unit-side reason table: every reason a unit can send (wire "yes") and
// every internal one (wire "no"), with the code the call sites use.
TEST(ReasonsTest, ProtocolReasonTableMatchesDeclarations) {
  const auto section = Section("docs/protocol.md", "## 17. Reason table");
  ASSERT_FALSE(section.empty()) << "docs/protocol.md has no '## 17. Reason table'";
  std::map<std::string, std::vector<std::string>> rows;
  for (const std::string& line : section) {
    auto cells = Cells(line);
    if (cells.size() < 3 || !cells[0].starts_with("`")) continue;
    const std::string name = Unquote(cells[0]);
    EXPECT_FALSE(rows.contains(name)) << name << " listed twice in docs/protocol.md";
    rows[name] = cells;
  }
  // Codes used at unit-side call sites.
  std::map<std::string, std::set<int>> codes;
  for (const Site& s : Scan().sites()) {
    if (s.code.empty() || s.file.starts_with("host/")) continue;
    codes[s.reason].insert(CodeNumber(s.code));
  }
  for (const Info& info : AllReasons()) {
    const std::string name(info.name);
    const bool listed = rows.contains(name);
    if (SentByUnit(info.side)) {
      if (!listed) {
        ADD_FAILURE() << name << " (a unit sends it) is missing from docs/protocol.md section 17";
        continue;
      }
      EXPECT_TRUE(rows[name][2].starts_with("yes")) << name << ": wire must be yes";
    } else if (info.side == Side::kInternal) {
      if (!listed) {
        ADD_FAILURE() << name << " (unit internal) is missing from docs/protocol.md section 17";
        continue;
      }
      EXPECT_TRUE(rows[name][2].starts_with("no")) << name << ": wire must be no";
    } else {
      EXPECT_FALSE(listed) << name
                           << " is raised by the host only: list it in docs/cli.md, Reasons";
      continue;
    }
    const std::string& code = rows[name][1];
    if (codes.contains(name) && !codes[name].contains(-1) && code != "—") {
      for (int c : codes[name]) {
        EXPECT_EQ(code, std::to_string(c))
            << name << ": docs/protocol.md says code " << code << ", a call site uses " << c;
      }
    }
  }
  for (const auto& [name, cells] : rows) {
    EXPECT_NE(Find(name), nullptr) << "docs/protocol.md lists undeclared reason " << name;
  }
}

int ExitOf(ExitClass c) { return static_cast<int>(c); }

// docs/cli.md's table of the reasons the host and hsmctl raise, with exit codes.
TEST(ReasonsTest, CliReasonTableMatchesDeclarations) {
  const auto section = Section("docs/cli.md", "## Reasons");
  ASSERT_FALSE(section.empty()) << "docs/cli.md has no '## Reasons'";
  std::map<std::string, std::string> exits;
  for (const std::string& line : section) {
    auto cells = Cells(line);
    if (cells.size() < 3 || !cells[0].starts_with("`")) continue;
    exits[Unquote(cells[0])] = cells[1];
  }
  for (const Info& info : AllReasons()) {
    const std::string name(info.name);
    if (!RaisedByHost(info.side)) {
      EXPECT_FALSE(exits.contains(name)) << name << " is not raised by the host";
      continue;
    }
    if (!exits.contains(name)) {
      ADD_FAILURE() << name << " is missing from docs/cli.md, Reasons";
      continue;
    }
    EXPECT_EQ(exits[name], std::to_string(ExitOf(info.exit_class))) << name;
  }
  for (const auto& [name, exit] : exits) {
    EXPECT_NE(Find(name), nullptr) << "docs/cli.md lists undeclared reason " << name;
  }
}

// Every `| code | meaning |` table of docs/cli.md: each reason named in the
// row of exit 1, 3 or 4 has that class. The main table's rows 3 and 4 name
// every host reason of their class.
TEST(ReasonsTest, CliExitCodeTablesMatchClasses) {
  std::stringstream ss(ReadFile(fs::path(SourceDir()) / "docs/cli.md"));
  int tables = 0;
  bool in_table = false;
  std::map<int, std::set<std::string>> first_table;
  for (std::string line; std::getline(ss, line);) {
    if (line == "| code | meaning |") {
      in_table = true;
      ++tables;
      continue;
    }
    if (!line.starts_with("|")) in_table = false;
    if (!in_table) continue;
    auto cells = Cells(line);
    if (cells.size() < 2 || cells[0].empty() || !std::isdigit(cells[0][0])) continue;
    const int code = std::stoi(cells[0]);
    for (const std::string& name : Backticked(cells[1])) {
      if (tables == 1) first_table[code].insert(name);
      if (code == 0 || code == 2) {
        ADD_FAILURE() << "exit " << code << " names reason " << name;
        continue;
      }
      EXPECT_EQ(ExitOf(Find(name)->exit_class), code)
          << "docs/cli.md exit-code table: " << name << " is in the row of exit " << code;
    }
  }
  EXPECT_GE(tables, 2);
  for (const Info& info : AllReasons()) {
    if (!RaisedByHost(info.side) || info.exit_class == ExitClass::kRefused) continue;
    EXPECT_TRUE(first_table[ExitOf(info.exit_class)].contains(std::string(info.name)))
        << info.name << " must be named in docs/cli.md's exit-code table, row "
        << ExitOf(info.exit_class);
  }
}

// Anywhere in docs/cli.md: "`REASON` (exit N)", "(`REASON`, exit N" and
// "`REASON`, exit N" give the reason's class.
TEST(ReasonsTest, CliInlineExitCodesMatchClasses) {
  const std::string doc = ReadFile(fs::path(SourceDir()) / "docs/cli.md");
  static const std::regex kInline("`([A-Z][A-Z0-9_]*)`,? \\(?exit ([0-9])");
  int checked = 0;
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), kInline);
       it != std::sregex_iterator(); ++it) {
    const Info* info = Find((*it)[1].str());
    if (info == nullptr) continue;
    ++checked;
    EXPECT_EQ(std::to_string(ExitOf(info->exit_class)), (*it)[2].str())
        << "docs/cli.md: " << (*it)[0];
  }
  EXPECT_GT(checked, 5);
}

}  // namespace
}  // namespace hsmsim::reason
