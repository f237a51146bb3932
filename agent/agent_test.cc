#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "agent/hardware_profile.h"
#include "common/hardware.h"
#include "common/proto_json.h"
#include "common/random.h"
#include "gtest/gtest.h"

namespace edgeloop::agent {
namespace {
namespace fs = std::filesystem;

v1::HardwareProfile Load(const std::string& name) {
  std::ifstream in(std::string(EDGELOOP_AGENT_TESTDATA) + "/" + name);
  std::stringstream text;
  text << in.rdbuf();
  v1::HardwareProfile profile;
  EXPECT_TRUE(ParseProtoJson(text.str(), &profile).ok()) << name;
  return profile;
}

// Profiles recorded from real machine kinds: the derived class must match what was recorded.
class RecordedProfileTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RecordedProfileTest, DerivesTheRecordedTargetClass) {
  v1::HardwareProfile profile = Load(GetParam());
  ASSERT_FALSE(profile.target().empty());
  EXPECT_EQ(DeriveTargetClass(profile), profile.target()) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Machines, RecordedProfileTest,
                         ::testing::Values("x86_64-v1-core2.json", "x86_64-v2-westmere.json",
                                           "x86_64-v3-haswell-nuc.json", "x86_64-v4-icelake.json",
                                           "aarch64-rpi4.json", "aarch64-orin-dotprod.json",
                                           "armv7-rpi3.json"));

TEST(TargetClassTest, ExplainsWhatIsMissing) {
  v1::HardwareProfile profile = Load("x86_64-v3-haswell-nuc.json");
  auto* features = profile.mutable_isa_features();
  features->erase(std::find(features->begin(), features->end(), "avx2"));
  std::string why;
  EXPECT_EQ(DeriveTargetClass(profile, &why), "x86_64-v2");
  EXPECT_TRUE(absl::StrContains(why, "avx2")) << why;

  v1::HardwareProfile arm = Load("armv7-rpi3.json");
  arm.clear_isa_features();
  EXPECT_EQ(DeriveTargetClass(arm, &why), "");
  EXPECT_TRUE(absl::StrContains(why, "NEON"));
  arm.set_arch("mips");
  EXPECT_EQ(DeriveTargetClass(arm, &why), "");
  EXPECT_TRUE(absl::StrContains(why, "mips"));
}

TEST(TargetClassTest, ModulesRunOnTheirClassAndAbove) {
  EXPECT_TRUE(TargetRunsOn("x86_64-v2", "x86_64-v3"));
  EXPECT_TRUE(TargetRunsOn("x86_64-v3", "x86_64-v3"));
  EXPECT_FALSE(TargetRunsOn("x86_64-v3", "x86_64-v2"));
  EXPECT_TRUE(TargetRunsOn("aarch64-v8", "aarch64-v8.2-dotprod"));
  EXPECT_FALSE(TargetRunsOn("aarch64-v8.2-dotprod", "aarch64-v8"));
  EXPECT_FALSE(TargetRunsOn("x86_64-v1", "aarch64-v8"));
  EXPECT_FALSE(TargetRunsOn("armv7-neon", "aarch64-v8"));
  EXPECT_FALSE(TargetRunsOn("bogus", "x86_64-v1"));
}

TEST(CpuFeaturesTest, AvxCountsOnlyWhenTheOsSavesItsState) {
  CpuidSnapshot haswell;
  haswell.leaf1_edx =
      (1u << 0) | (1u << 8) | (1u << 15) | (1u << 23) | (1u << 24) | (1u << 25) | (1u << 26);
  haswell.leaf1_ecx = (1u << 0) | (1u << 9) | (1u << 12) | (1u << 13) | (1u << 19) | (1u << 20) |
                      (1u << 22) | (1u << 23) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 29);
  haswell.leaf7_ebx = (1u << 3) | (1u << 5) | (1u << 8);
  haswell.ext1_ecx = (1u << 0) | (1u << 5);
  haswell.xcr0 = 0x7;  // x87, SSE, AVX state enabled
  v1::HardwareProfile profile;
  profile.set_arch("x86_64");
  for (const auto& f : X86Features(haswell)) profile.add_isa_features(f);
  EXPECT_EQ(DeriveTargetClass(profile), "x86_64-v3");

  haswell.xcr0 = 0x3;  // a kernel booted without AVX support
  profile.clear_isa_features();
  for (const auto& f : X86Features(haswell)) profile.add_isa_features(f);
  EXPECT_EQ(DeriveTargetClass(profile), "x86_64-v2");

  CpuidSnapshot skylake_sp = haswell;
  skylake_sp.leaf7_ebx |= (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
  skylake_sp.xcr0 = 0xe7;
  profile.clear_isa_features();
  for (const auto& f : X86Features(skylake_sp)) profile.add_isa_features(f);
  EXPECT_EQ(DeriveTargetClass(profile), "x86_64-v4");
}

TEST(CpuFeaturesTest, ArmHwcaps) {
  const uint64_t asimd = 1u << 1, asimddp = 1u << 20;
  auto a72 = Aarch64Features(asimd | 1u, 0);
  EXPECT_EQ(a72, (std::vector<std::string>{"asimd", "fp"}));
  auto a76 = Aarch64Features(asimd | asimddp | 1u, uint64_t{1} << 13);
  EXPECT_NE(std::find(a76.begin(), a76.end(), "dotprod"), a76.end());
  EXPECT_NE(std::find(a76.begin(), a76.end(), "i8mm"), a76.end());
  auto v7 = Armv7Features((1u << 12) | (1u << 6));
  EXPECT_EQ(v7, (std::vector<std::string>{"neon", "vfp"}));
}

TEST(HardwareProfileTest, ReadsThisMachine) {
  std::string dev = ::testing::TempDir() + "/dev-" + RandomHex(4);
  fs::create_directories(dev + "/dri");
  for (const char* node :
       {"/nvidia0", "/nvidiactl", "/nvidia-uvm", "/dri/renderD128", "/dri/card0", "/apex_0"}) {
    std::ofstream(dev + node);
  }
  ProfileOptions options;
  options.dev_root = dev;
  options.labels["site"] = "lab";
  v1::HardwareProfile profile = ReadHardwareProfile(options);
  EXPECT_FALSE(profile.arch().empty());
  EXPECT_GE(profile.cores(), 1);
  EXPECT_GT(profile.ram_mb(), 0);
  EXPECT_GT(profile.storage_total_mb(), 0);
  EXPECT_FALSE(profile.kernel().empty());
  EXPECT_FALSE(profile.glibc().empty());
  EXPECT_EQ(profile.labels().at("site"), "lab");
  EXPECT_TRUE(std::is_sorted(profile.isa_features().begin(), profile.isa_features().end()));
#if defined(__x86_64__)
  EXPECT_EQ(profile.arch(), "x86_64");
  EXPECT_TRUE(absl::StartsWith(profile.target(), "x86_64-v")) << profile.target();
#endif
  ASSERT_EQ(profile.accelerators_size(), 3);
  EXPECT_EQ(profile.accelerators(0).kind(), "dri");
  EXPECT_EQ(profile.accelerators(0).path(), dev + "/dri/renderD128");
  EXPECT_EQ(profile.accelerators(1).kind(), "npu");
  EXPECT_EQ(profile.accelerators(2).path(), dev + "/nvidia0");
  fs::remove_all(dev);
}

}  // namespace
}  // namespace edgeloop::agent
