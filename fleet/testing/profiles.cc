#include "fleet/testing/profiles.h"

namespace edgeloop::fleet::testing {

v1::HardwareProfile Profile(const std::string& arch, std::vector<std::string> features,
                            int64_t ram_mb) {
  v1::HardwareProfile p;
  p.set_arch(arch);
  for (auto& f : features) p.add_isa_features(f);
  p.set_cores(4);
  p.set_ram_mb(ram_mb);
  p.set_storage_mb(8000);
  p.set_os("Debian GNU/Linux 12 (bookworm)");
  return p;
}

v1::HardwareProfile Pi4() { return Profile("aarch64", {"asimd", "fp"}, 3796); }

v1::HardwareProfile Orin() {
  v1::HardwareProfile p = Profile("aarch64", {"asimd", "asimddp", "dotprod", "fp"}, 7620);
  auto* gpu = p.add_accelerators();
  gpu->set_kind("dri");
  gpu->set_path("/dev/dri/renderD128");
  return p;
}

}  // namespace edgeloop::fleet::testing
