#include "compiler/selection.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace edgeloop::compiler {
namespace {

v1::HardwareProfile Pi4(int64_t ram_mb, int64_t storage_mb) {
  v1::HardwareProfile p;
  p.set_arch("aarch64");
  p.add_isa_features("asimd");
  p.add_isa_features("fp");
  p.set_ram_mb(ram_mb);
  p.set_storage_mb(storage_mb);
  return p;
}

TEST(SelectionTest, PicksTargetFlagsAndSaysWhy) {
  auto s = SelectForDevice(Pi4(3796, 20000), {1 << 20, 4 << 20, 5 << 20});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->target, "aarch64-v8");
  EXPECT_EQ(s->backend, "c");
  EXPECT_EQ(s->flags, std::vector<std::string>{"-march=armv8-a"});
  EXPECT_TRUE(absl::StrContains(s->reason, "dotprod")) << s->reason;  // what the next level needs
  EXPECT_TRUE(absl::StrContains(s->reason, "5.0 MiB of 3796 MiB RAM")) << s->reason;
}

TEST(SelectionTest, RefusesDevicesThatCannotHoldTheModel) {
  auto ram = SelectForDevice(Pi4(256, 20000), {100 << 20, 60 << 20, 60 << 20});
  EXPECT_EQ(ram.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(ram.status().message(), "160.0 MiB of memory")) << ram.status();
  auto disk = SelectForDevice(Pi4(4096, 100), {1 << 20, 60 << 20, 60 << 20});
  EXPECT_EQ(disk.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(disk.status().message(), "100 MiB free")) << disk.status();
  v1::HardwareProfile mips;
  mips.set_arch("mips");
  EXPECT_EQ(SelectForDevice(mips, {}).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace edgeloop::compiler
