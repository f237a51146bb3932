#include "common/flags.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

namespace edgeloop {

std::string FlagSet::EnvName(const std::string& flag) {
  return absl::StrCat("EDGELOOP_", absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}})));
}

void FlagSet::String(const std::string& name, std::string* target, std::string help) {
  flags_[name] = {[target](const std::string& v) {
                    *target = v;
                    return true;
                  },
                  false, std::move(help)};
}

void FlagSet::Int(const std::string& name, int* target, std::string help) {
  flags_[name] = {
      [target](const std::string& v) { return absl::SimpleAtoi(v, target) && *target >= 0; }, false,
      std::move(help)};
}

void FlagSet::Int64(const std::string& name, int64_t* target, std::string help) {
  flags_[name] = {
      [target](const std::string& v) { return absl::SimpleAtoi(v, target) && *target >= 0; }, false,
      std::move(help)};
}

void FlagSet::Double(const std::string& name, double* target, std::string help) {
  flags_[name] = {
      [target](const std::string& v) { return absl::SimpleAtod(v, target) && *target >= 0; }, false,
      std::move(help)};
}

void FlagSet::Bool(const std::string& name, bool* target, std::string help) {
  flags_[name] = {[target](const std::string& v) { return absl::SimpleAtob(v, target); }, true,
                  std::move(help)};
}

void FlagSet::Duration(const std::string& name, absl::Duration* target, std::string help) {
  flags_[name] = {[target](const std::string& v) {
                    return absl::ParseDuration(v, target) && *target > absl::ZeroDuration();
                  },
                  false, std::move(help)};
}

absl::Status FlagSet::Parse(const std::vector<std::string>& args, bool* help) {
  *help = false;
  for (const auto& [name, flag] : flags_) {
    const char* env = std::getenv(EnvName(name).c_str());
    if (env != nullptr && *env != '\0' && !flag.set(env)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value \"", env, "\" for ", EnvName(name)));
    }
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return absl::OkStatus();
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg, "\" (see --help)"));
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end())
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    if (!has_value) {
      if (it->second.boolean) {
        value = "true";
      } else if (i + 1 < args.size()) {
        value = args[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
      }
    }
    if (!it->second.set(value)) {
      return absl::InvalidArgumentError(absl::StrCat("bad value \"", value, "\" for --", name));
    }
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out;
  for (const auto& [name, flag] : flags_)
    absl::StrAppend(&out, "  --", name, "\n      ", flag.help, "\n");
  return out;
}

}  // namespace edgeloop
