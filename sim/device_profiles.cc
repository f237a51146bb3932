#include "sim/device_profiles.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/hardware.h"

namespace edgeloop::sim {

absl::StatusOr<v1::HardwareProfile> ProfileFor(const std::string& target, int64_t ram_mb,
                                               const std::map<std::string, std::string>& labels) {
  static const std::vector<std::vector<std::string>> kX86 = {
      {"cmov", "cx8", "fpu", "fxsr", "mmx", "sse", "sse2"},
      {"cx16", "lahf_lm", "popcnt", "sse3", "sse4_1", "sse4_2", "ssse3"},
      {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"},
      {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}};
  v1::HardwareProfile p;
  std::vector<std::string> features;
  if (target.rfind("x86_64-v", 0) == 0) {
    p.set_arch("x86_64");
    const int level = target.back() - '0';
    for (int l = 0; l < level && l < 4; ++l) {
      features.insert(features.end(), kX86[l].begin(), kX86[l].end());
    }
  } else if (target == "aarch64-v8") {
    p.set_arch("aarch64");
    features = {"asimd", "fp"};
  } else if (target == "aarch64-v8.2-dotprod") {
    p.set_arch("aarch64");
    features = {"asimd", "asimddp", "dotprod", "fp"};
  } else if (target == "armv7-neon") {
    p.set_arch("armv7l");
    features = {"neon", "vfpv3"};
  }
  std::sort(features.begin(), features.end());
  for (const std::string& f : features) p.add_isa_features(f);
  if (DeriveTargetClass(p) != target) {
    return absl::InvalidArgumentError(absl::StrCat("unknown target class \"", target, "\""));
  }
  p.set_cpu_model(absl::StrCat("edgeloop-fleetsim ", target));
  p.set_cores(4);
  p.set_ram_mb(ram_mb > 0 ? ram_mb : 2048);
  p.set_storage_mb(8192);
  p.set_storage_total_mb(16384);
  p.set_os("edgeloop-fleetsim");
  p.set_kernel("sim");
  p.set_glibc("2.36");
  p.set_agent_version("fleetsim");
  p.mutable_labels()->insert(labels.begin(), labels.end());
  (*p.mutable_labels())["fleetsim"] = "true";
  p.set_target(target);
  return p;
}

}  // namespace edgeloop::sim
