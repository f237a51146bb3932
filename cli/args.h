#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace edgeloop::cli {

/// A command line split into positional words and `--flag value` options. Flags may repeat
/// (`--label a=1 --label b=2`); `--flag=value` works too.
struct Args {
  std::vector<std::string> words;
  std::multimap<std::string, std::string> flags;

  std::string Flag(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> All(const std::string& name) const;
  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

/// Flags in `boolean_flags` take no value.
absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& argv,
                               const std::vector<std::string>& boolean_flags);

/// "k=v" pairs into a map; INVALID_ARGUMENT when one lacks '='.
absl::StatusOr<std::map<std::string, std::string>> ParsePairs(const std::vector<std::string>& pairs,
                                                              const std::string& flag);

}  // namespace edgeloop::cli
