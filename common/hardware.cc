#include "common/hardware.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace edgeloop {
namespace {

// x86-64 psABI micro-architecture levels, as CPUID flags in Linux /proc/cpuinfo spelling.
const std::vector<std::vector<std::string>>& X86Levels() {
  static const auto* levels = new std::vector<std::vector<std::string>>{
      /* v1 */ {"cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"},
      /* v2 */ {"cx16", "lahf_lm", "popcnt", "sse3", "sse4_1", "sse4_2", "ssse3"},
      /* v3 */ {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
      /* v4 */ {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"},
  };
  return *levels;
}

std::vector<std::string> Missing(const std::set<std::string>& have,
                                 const std::vector<std::string>& need) {
  std::vector<std::string> missing;
  for (const auto& f : need) {
    if (have.count(f) == 0) missing.push_back(f);
  }
  return missing;
}

int Rank(absl::string_view target) {
  for (size_t i = 0; i < std::size(kTargetClasses); ++i) {
    if (kTargetClasses[i] == target) return static_cast<int>(i);
  }
  return -1;
}

absl::string_view Family(absl::string_view target) { return target.substr(0, target.find('-')); }

}  // namespace

std::string DeriveTargetClass(const v1::HardwareProfile& profile, std::string* why) {
  std::string ignored;
  if (why == nullptr) why = &ignored;
  const std::set<std::string> have(profile.isa_features().begin(), profile.isa_features().end());
  const std::string& arch = profile.arch();
  if (arch == "x86_64" || arch == "amd64") {
    int level = 0;
    for (const auto& features : X86Levels()) {
      std::vector<std::string> missing = Missing(have, features);
      if (!missing.empty()) {
        *why = absl::StrCat("x86-64 level v", level + 1, " needs ", absl::StrJoin(missing, ", "));
        break;
      }
      ++level;
    }
    if (level == 0) return "";
    if (level == 4) why->clear();
    return absl::StrCat("x86_64-v", level);
  }
  if (arch == "aarch64" || arch == "arm64") {
    if (have.count("asimd") == 0) {
      *why = "aarch64 without Advanced SIMD (asimd)";
      return "";
    }
    if (have.count("dotprod") || have.count("asimddp")) return "aarch64-v8.2-dotprod";
    *why = "no dot-product extension (dotprod)";
    return "aarch64-v8";
  }
  if (absl::StartsWith(arch, "armv7") || arch == "armhf" || arch == "arm") {
    if (have.count("neon")) return "armv7-neon";
    *why = "armv7 without NEON";
    return "";
  }
  *why = absl::StrCat("unsupported architecture \"", arch, "\"");
  return "";
}

std::string ProfileHash(const v1::HardwareProfile& profile) {
  std::string bytes;
  google::protobuf::io::StringOutputStream stream(&bytes);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  profile.SerializeToCodedStream(&coded);
  coded.Trim();
  return DigestFromHex(Sha256Hex(bytes));
}

bool TargetRunsOn(absl::string_view module_target, absl::string_view device_target) {
  int module_rank = Rank(module_target), device_rank = Rank(device_target);
  if (module_rank < 0 || device_rank < 0) return false;
  return Family(module_target) == Family(device_target) && module_rank <= device_rank;
}

}  // namespace edgeloop
