#include "fleet/selector.h"

#include "gtest/gtest.h"

namespace edgeloop::fleet {
namespace {

const Attributes kPi = {{"site", {"plant-3"}},    {"tier", {"prod"}},
                        {"hw.arch", {"aarch64"}}, {"hw.ram_mb", {"3796"}},
                        {"hw.cores", {"4"}},      {"hw.target", {"aarch64-v8"}}};
const Attributes kGpuBox = {
    {"site", {"plant-1"}},   {"env", {"canary"}},      {"gpu", {""}},
    {"hw.arch", {"x86_64"}}, {"hw.ram_mb", {"32000"}}, {"hw.accel", {"dri", "nvidia"}}};

bool Match(const std::string& text, const Attributes& a) {
  auto s = Selector::Parse(text);
  EXPECT_TRUE(s.ok()) << text << ": " << s.status();
  return s.ok() && s->Matches(a);
}

TEST(SelectorTest, LabelTerms) {
  EXPECT_TRUE(Match("", kPi));
  EXPECT_TRUE(Match("site=plant-3", kPi));
  EXPECT_TRUE(Match("site==plant-3, tier!=test", kPi));
  EXPECT_FALSE(Match("site=plant-1", kPi));
  EXPECT_TRUE(Match("env in (prod,canary)", kGpuBox));
  EXPECT_FALSE(Match("env in (prod, canary)", kPi));  // no env label at all
  EXPECT_TRUE(Match("env notin (dev)", kPi));         // notin holds without the key
  EXPECT_FALSE(Match("env notin (canary)", kGpuBox));
  EXPECT_TRUE(Match("gpu", kGpuBox));
  EXPECT_FALSE(Match("gpu", kPi));
  EXPECT_TRUE(Match("!gpu", kPi));
  EXPECT_TRUE(Match("tier!=test", kGpuBox));  // != holds without the key
  EXPECT_TRUE(Match("gpu=", kGpuBox));        // an empty value, as in Kubernetes
}

TEST(SelectorTest, HardwareAndNumericTerms) {
  EXPECT_TRUE(Match("hw.arch=aarch64,hw.ram_mb>=512", kPi));
  EXPECT_FALSE(Match("hw.arch=aarch64,hw.ram_mb>=4096", kPi));
  EXPECT_TRUE(Match("hw.cores<8", kPi));
  EXPECT_FALSE(Match("hw.cores>4", kPi));
  EXPECT_TRUE(Match("hw.cores<=4", kPi));
  EXPECT_TRUE(Match("hw.accel=nvidia", kGpuBox));  // any accelerator kind
  EXPECT_TRUE(Match("hw.accel", kGpuBox));
  EXPECT_TRUE(Match("!hw.accel", kPi));
  EXPECT_FALSE(Match("hw.ram_mb>100", {{"hw.ram_mb", {"lots"}}}));
}

TEST(SelectorTest, MalformedSelectorsAreRejectedWithAReason) {
  for (const char* bad : {"=x", "a in prod", "a in (x", "a in ()", "hw.ram_mb>=many", "a=b c", ",",
                          "a=(b)", "a ~ b", "a,,b"}) {
    auto s = Selector::Parse(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(Selector::Parse(std::string(5000, 'a')).ok());
  std::string many;
  for (int i = 0; i < 65; ++i) many += "a,";
  EXPECT_FALSE(Selector::Parse(many + "a").ok());
}

}  // namespace
}  // namespace edgeloop::fleet
