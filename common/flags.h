#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace edgeloop {

/// Command-line flags for the edgeloop binaries: `--name value` or `--name=value`, each also
/// settable as the environment variable EDGELOOP_<NAME> (upper-snake); a flag on the command
/// line wins over the environment. Boolean flags take no value.
class FlagSet {
 public:
  void String(const std::string& name, std::string* target, std::string help);
  void Int(const std::string& name, int* target, std::string help);
  void Int64(const std::string& name, int64_t* target, std::string help);
  void Bool(const std::string& name, bool* target, std::string help);
  void Double(const std::string& name, double* target, std::string help);
  /// A duration such as "90s", "24h" or "1h30m"; positive.
  void Duration(const std::string& name, absl::Duration* target, std::string help);

  /// Applies the environment, then `args`. INVALID_ARGUMENT names an unknown flag, a missing or
  /// malformed value, or a positional argument. Sets `*help` (and applies nothing more) on
  /// --help.
  absl::Status Parse(const std::vector<std::string>& args, bool* help);
  /// One line per flag, for --help.
  std::string Usage() const;

  static std::string EnvName(const std::string& flag);

 private:
  struct Flag {
    std::function<bool(const std::string&)> set;
    bool boolean = false;
    std::string help;
  };
  std::map<std::string, Flag> flags_;
};

}  // namespace edgeloop
