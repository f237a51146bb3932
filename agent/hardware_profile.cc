#include "agent/hardware_profile.h"

#include <dirent.h>
#include <gnu/libc-version.h>
#include <sys/auxv.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "common/hardware.h"

#ifndef EDGELOOP_VERSION
#define EDGELOOP_VERSION "dev"
#endif

namespace edgeloop::agent {
namespace {

struct Bit {
  int bit;
  const char* name;
};

void AddBits(uint64_t word, std::initializer_list<Bit> bits, std::vector<std::string>* out) {
  for (const Bit& b : bits) {
    if (word & (uint64_t{1} << b.bit)) out->push_back(b.name);
  }
}

// The value of the first "key : value" line in /proc/cpuinfo with one of `keys`.
std::string CpuinfoValue(std::initializer_list<const char*> keys) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    for (const char* key : keys) {
      if (absl::StartsWith(line, key)) {
        size_t colon = line.find(':');
        if (colon != std::string::npos)
          return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "";
}

int64_t MemTotalMb() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "MemTotal:")) {
      int64_t kb = 0;
      std::string digits(absl::StripAsciiWhitespace(absl::StripSuffix(line.substr(9), "kB")));
      if (absl::SimpleAtoi(digits, &kb)) return kb / 1024;
    }
  }
  return 0;
}

std::string OsPrettyName() {
  std::ifstream in("/etc/os-release");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "PRETTY_NAME=")) {
      std::string value = line.substr(12);
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
        value = value.substr(1, value.size() - 2);
      return value;
    }
  }
  return "";
}

void FindAccelerators(const std::string& dev_root, v1::HardwareProfile* profile) {
  struct Pattern {
    const char* dir;
    const char* prefix;
    const char* kind;
  };
  // NVIDIA GPUs, DRM render nodes (any GPU with a compute-capable driver), and NPUs that
  // edge boards commonly expose: Linux accel, Coral Edge TPU, Hailo, Rockchip, VeriSilicon.
  const Pattern patterns[] = {{"", "nvidia", "nvidia"},   {"/dri", "renderD", "dri"},
                              {"/accel", "accel", "npu"}, {"", "apex_", "npu"},
                              {"", "hailo", "npu"},       {"", "rknpu", "npu"},
                              {"", "galcore", "npu"}};
  std::vector<std::pair<std::string, std::string>> found;
  for (const Pattern& p : patterns) {
    std::string dir = dev_root + p.dir;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) continue;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (!absl::StartsWith(name, p.prefix)) continue;
      // nvidiactl / nvidia-uvm are control nodes, not devices.
      if (std::string(p.kind) == "nvidia" && (name.size() == 6 || !absl::ascii_isdigit(name[6])))
        continue;
      found.emplace_back(p.kind, dir + "/" + name);
    }
    ::closedir(d);
  }
  std::sort(found.begin(), found.end());
  for (const auto& [kind, path] : found) {
    v1::Accelerator* a = profile->add_accelerators();
    a->set_kind(kind);
    a->set_path(path);
  }
}

std::vector<std::string> ReadIsaFeatures() {
#if defined(__x86_64__)
  CpuidSnapshot s;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    s.leaf1_ecx = c;
    s.leaf1_edx = d;
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    s.leaf7_ebx = b;
    s.leaf7_ecx = c;
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) s.leaf7_1_eax = a;
  if (__get_cpuid(0x80000001, &a, &b, &c, &d)) s.ext1_ecx = c;
  if (s.leaf1_ecx & (1u << 27)) {  // OSXSAVE: xgetbv is allowed
    uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    s.xcr0 = (uint64_t{hi} << 32) | lo;
  }
  return X86Features(s);
#elif defined(__aarch64__)
  return Aarch64Features(::getauxval(AT_HWCAP), ::getauxval(AT_HWCAP2));
#elif defined(__arm__)
  return Armv7Features(::getauxval(AT_HWCAP));
#else
  return {};
#endif
}

}  // namespace

std::vector<std::string> X86Features(const CpuidSnapshot& s) {
  std::vector<std::string> f;
  AddBits(
      s.leaf1_edx,
      {{0, "fpu"}, {8, "cx8"}, {15, "cmov"}, {23, "mmx"}, {24, "fxsr"}, {25, "sse"}, {26, "sse2"}},
      &f);
  AddBits(s.leaf1_ecx,
          {{0, "sse3"},
           {9, "ssse3"},
           {13, "cx16"},
           {19, "sse4_1"},
           {20, "sse4_2"},
           {22, "movbe"},
           {23, "popcnt"},
           {26, "xsave"}},
          &f);
  AddBits(s.leaf7_ebx, {{3, "bmi1"}, {8, "bmi2"}}, &f);
  AddBits(s.ext1_ecx, {{0, "lahf_lm"}, {5, "abm"}}, &f);
  // XCR0 bit 1 = SSE state, bit 2 = AVX state; bits 5-7 = opmask and ZMM state.
  const bool os_avx = (s.xcr0 & 0x6) == 0x6;
  const bool os_avx512 = os_avx && (s.xcr0 & 0xe0) == 0xe0;
  if (os_avx) {
    AddBits(s.leaf1_ecx, {{12, "fma"}, {28, "avx"}, {29, "f16c"}}, &f);
    AddBits(s.leaf7_ebx, {{5, "avx2"}}, &f);
    AddBits(s.leaf7_1_eax, {{4, "avx_vnni"}}, &f);
  }
  if (os_avx512) {
    AddBits(
        s.leaf7_ebx,
        {{16, "avx512f"}, {17, "avx512dq"}, {28, "avx512cd"}, {30, "avx512bw"}, {31, "avx512vl"}},
        &f);
    AddBits(s.leaf7_ecx, {{11, "avx512_vnni"}}, &f);
  }
  std::sort(f.begin(), f.end());
  return f;
}

std::vector<std::string> Aarch64Features(uint64_t hwcap, uint64_t hwcap2) {
  std::vector<std::string> f;
  // Bit numbers from the kernel's arch/arm64/include/uapi/asm/hwcap.h.
  AddBits(hwcap, {{0, "fp"}, {1, "asimd"}, {7, "atomics"}, {20, "asimddp"}, {22, "sve"}}, &f);
  AddBits(hwcap2, {{1, "sve2"}, {13, "i8mm"}, {14, "bf16"}}, &f);
  if (hwcap & (uint64_t{1} << 20)) f.push_back("dotprod");
  std::sort(f.begin(), f.end());
  return f;
}

std::vector<std::string> Armv7Features(uint64_t hwcap) {
  std::vector<std::string> f;
  // arch/arm/include/uapi/asm/hwcap.h
  AddBits(hwcap, {{6, "vfp"}, {12, "neon"}, {13, "vfpv3"}, {16, "vfpv4"}, {17, "idiva"}}, &f);
  std::sort(f.begin(), f.end());
  return f;
}

v1::HardwareProfile ReadHardwareProfile(const ProfileOptions& options) {
  v1::HardwareProfile profile;
  struct utsname u;
  if (::uname(&u) == 0) {
    profile.set_arch(u.machine);
    profile.set_kernel(u.release);
  }
  profile.set_cpu_model(CpuinfoValue({"model name", "Hardware", "Model", "Processor"}));
  for (const std::string& f : ReadIsaFeatures()) profile.add_isa_features(f);
  profile.set_cores(static_cast<int32_t>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN))));
  profile.set_ram_mb(MemTotalMb());
  struct statvfs fs;
  if (::statvfs(options.state_dir.c_str(), &fs) == 0) {
    profile.set_storage_mb(static_cast<int64_t>(fs.f_bavail * fs.f_frsize / (1024 * 1024)));
    profile.set_storage_total_mb(static_cast<int64_t>(fs.f_blocks * fs.f_frsize / (1024 * 1024)));
  }
  FindAccelerators(options.dev_root, &profile);
  profile.set_os(OsPrettyName());
  profile.set_glibc(gnu_get_libc_version());
  profile.set_agent_version(EDGELOOP_VERSION);
  profile.mutable_labels()->insert(options.labels.begin(), options.labels.end());
  profile.set_target(DeriveTargetClass(profile));
  return profile;
}

}  // namespace edgeloop::agent
