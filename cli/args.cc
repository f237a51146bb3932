#include "cli/args.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace edgeloop::cli {

std::string Args::Flag(const std::string& name, const std::string& fallback) const {
  auto range = flags.equal_range(name);
  if (range.first == range.second) return fallback;
  return std::prev(range.second)->second;  // the last one wins
}

std::vector<std::string> Args::All(const std::string& name) const {
  std::vector<std::string> out;
  for (auto [it, end] = flags.equal_range(name); it != end; ++it) out.push_back(it->second);
  return out;
}

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv,
                               const std::vector<std::string>& boolean_flags) {
  Args args;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-o") {
      if (i + 1 >= argv.size()) return absl::InvalidArgumentError("-o needs table or json");
      args.flags.emplace("output", argv[++i]);
    } else if (absl::StartsWith(a, "--") && a.size() > 2) {
      std::string name = a.substr(2);
      if (size_t eq = name.find('='); eq != std::string::npos) {
        args.flags.emplace(name.substr(0, eq), name.substr(eq + 1));
      } else if (std::find(boolean_flags.begin(), boolean_flags.end(), name) !=
                 boolean_flags.end()) {
        args.flags.emplace(name, "true");
      } else if (i + 1 < argv.size()) {
        args.flags.emplace(name, argv[++i]);
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      }
    } else {
      args.words.push_back(a);
    }
  }
  return args;
}

absl::StatusOr<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& pairs,
                                                              const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const std::string& p : pairs) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " takes key=value, got \"", p, "\""));
    }
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

}  // namespace edgeloop::cli
