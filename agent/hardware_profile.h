#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "edgeloop/v1/device.pb.h"

namespace edgeloop::agent {

struct ProfileOptions {
  std::string state_dir = ".";                // free storage is measured here
  std::map<std::string, std::string> labels;  // from --labels
  std::string dev_root = "/dev";              // where accelerators are looked for
};

/// Reads the profile of the machine this runs on and derives its target class. Never fails:
/// a value that cannot be read stays empty (or 0), so a device with an unusual /proc still
/// reports what it can.
v1::HardwareProfile ReadHardwareProfile(const ProfileOptions& options);

/// The CPUID words the x86-64 feature list is made from, plus XCR0 (0 when the OS does not
/// expose XSAVE). Separate from the reading so recorded machines can be replayed in tests.
struct CpuidSnapshot {
  uint32_t leaf1_ecx = 0, leaf1_edx = 0;
  uint32_t leaf7_ebx = 0, leaf7_ecx = 0, leaf7_1_eax = 0;
  uint32_t ext1_ecx = 0;  // leaf 0x80000001
  uint64_t xcr0 = 0;
};

/// Feature names (Linux /proc/cpuinfo spelling) from CPUID. AVX and AVX-512 features count only
/// when XCR0 shows the OS saves their register state; otherwise using them would fault.
std::vector<std::string> X86Features(const CpuidSnapshot& cpuid);

/// Feature names from the aarch64 auxiliary vector (AT_HWCAP, AT_HWCAP2).
std::vector<std::string> Aarch64Features(uint64_t hwcap, uint64_t hwcap2);

/// Feature names from the 32-bit ARM auxiliary vector (AT_HWCAP).
std::vector<std::string> Armv7Features(uint64_t hwcap);

}  // namespace edgeloop::agent
