// edgeloop-agent: the on-device side of edgeloop.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "agent/hardware_profile.h"
#include "common/proto_json.h"

namespace {

constexpr char kUsage[] =
    R"(usage: edgeloop-agent --print-profile [--state-dir DIR] [--labels k=v,...]

  --print-profile     print this device's hardware profile and target class as JSON and exit;
                      contacts nobody
  --state-dir DIR     where the agent keeps its state; free storage is measured there (default .)
  --labels k=v,...    labels to include in the profile
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace edgeloop;
  agent::ProfileOptions options;
  bool print_profile = false;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "edgeloop-agent: %s needs a value\n", flag);
        std::exit(2);
      }
      return args[++i];
    };
    if (a == "--print-profile") {
      print_profile = true;
    } else if (a == "--state-dir") {
      options.state_dir = value("--state-dir");
    } else if (a == "--labels") {
      for (absl::string_view pair : absl::StrSplit(value("--labels"), ',', absl::SkipEmpty())) {
        std::pair<std::string, std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
        if (kv.first.empty()) {
          std::fprintf(stderr, "edgeloop-agent: --labels takes k=v,k=v\n");
          return 2;
        }
        options.labels[kv.first] = kv.second;
      }
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "edgeloop-agent: unknown argument \"%s\"\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (!print_profile) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::printf("%s\n", PrintProtoJson(agent::ReadHardwareProfile(options), /*pretty=*/true).c_str());
  return 0;
}
