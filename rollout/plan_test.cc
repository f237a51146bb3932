#include "absl/time/civil_time.h"
#include "gtest/gtest.h"
#include "rollout/gates.h"
#include "rollout/maintenance_window.h"
#include "rollout/wave_plan.h"

namespace edgeloop::rollout {
namespace {

v1::RolloutSpec Waves(std::vector<double> waves) {
  v1::RolloutSpec spec;
  for (double w : waves) spec.add_waves(w);
  return spec;
}

TEST(WavePlanTest, PercentagesBecomeCumulativeCounts) {
  auto plan = WavePlan::FromSpec(Waves({1, 10, 50, 100}));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Cumulative(1000), (std::vector<int64_t>{10, 100, 500, 1000}));
  // Each wave takes at least one more device while any is left.
  EXPECT_EQ(plan->Cumulative(3), (std::vector<int64_t>{1, 2, 3, 3}));
  EXPECT_EQ(plan->Cumulative(0), (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_EQ(plan->Label(1, 1000), "10%");
  // A plan that stops short ends with every device.
  EXPECT_EQ(WavePlan::FromSpec(Waves({5, 20}))->Cumulative(100),
            (std::vector<int64_t>{5, 20, 100}));
  // No waves: one wave of everything.
  EXPECT_EQ(WavePlan::FromSpec(v1::RolloutSpec())->Cumulative(7), (std::vector<int64_t>{7}));
}

TEST(WavePlanTest, CountsAndExponentialRate) {
  v1::RolloutSpec counts;
  for (int64_t c : {5, 50, 500}) counts.add_wave_counts(c);
  EXPECT_EQ(WavePlan::FromSpec(counts)->Cumulative(100), (std::vector<int64_t>{5, 50, 100, 100}));
  EXPECT_EQ(WavePlan::FromSpec(counts)->Label(3, 100), "all");

  v1::RolloutSpec rate;
  rate.mutable_rate()->set_start(10);
  rate.mutable_rate()->set_factor(2);
  rate.mutable_rate()->set_max_per_minute(1000);
  auto plan = WavePlan::FromSpec(rate);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->Cumulative(100), (std::vector<int64_t>{10, 30, 70, 100}));
  EXPECT_EQ(plan->max_per_minute(), 1000);
}

TEST(WavePlanTest, RefusesBadWaves) {
  EXPECT_EQ(WavePlan::FromSpec(Waves({10, 5})).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WavePlan::FromSpec(Waves({10, 150})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WavePlan::FromSpec(Waves({0, 50})).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WavePlan::FromSpec(Waves({std::nan("")})).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::RolloutSpec both = Waves({10});
  both.add_wave_counts(5);
  EXPECT_EQ(WavePlan::FromSpec(both).status().code(), absl::StatusCode::kInvalidArgument);
  v1::RolloutSpec flat;
  flat.mutable_rate()->set_start(1);
  flat.mutable_rate()->set_factor(1);
  EXPECT_EQ(WavePlan::FromSpec(flat).status().code(), absl::StatusCode::kInvalidArgument);
}

absl::Time Utc(int y, int mo, int d, int h, int mi) {
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), absl::UTCTimeZone());
}

TEST(MaintenanceWindowTest, OpensAtCronStartsForTheDuration) {
  v1::MaintenanceWindow w;
  w.set_cron("0 2 * * 1-5");  // 02:00 on weekdays
  w.set_duration_seconds(2 * 3600);
  auto check = MaintenanceWindowCheck::Create(w);
  ASSERT_TRUE(check.ok()) << check.status();
  // 2026-12-07 is a Monday.
  EXPECT_FALSE(check->Open(Utc(2026, 12, 7, 1, 59)));
  EXPECT_TRUE(check->Open(Utc(2026, 12, 7, 2, 0)));
  EXPECT_TRUE(check->Open(Utc(2026, 12, 7, 3, 59)));
  EXPECT_FALSE(check->Open(Utc(2026, 12, 7, 4, 0)));
  EXPECT_FALSE(check->Open(Utc(2026, 12, 6, 2, 30)));  // Sunday
  // Always open without a cron expression.
  EXPECT_TRUE(MaintenanceWindowCheck::Create({})->Open(Utc(2026, 12, 6, 2, 30)));
}

TEST(MaintenanceWindowTest, TimeZonesStepsAndLists) {
  v1::MaintenanceWindow w;
  w.set_cron("*/30 22,23 * * *");
  w.set_duration_seconds(600);
  w.set_time_zone("Europe/Berlin");  // UTC+1 in December
  auto check = MaintenanceWindowCheck::Create(w);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->Open(Utc(2026, 12, 7, 21, 35)));   // 22:35 Berlin
  EXPECT_FALSE(check->Open(Utc(2026, 12, 7, 21, 45)));  // 22:45
  EXPECT_TRUE(check->Open(Utc(2026, 12, 7, 22, 0)));    // 23:00
  EXPECT_FALSE(check->Open(Utc(2026, 12, 7, 22, 30) + absl::Minutes(11)));
}

TEST(MaintenanceWindowTest, RefusesBadExpressions) {
  for (const char* cron : {"* * * *", "60 * * * *", "* 24 * * *", "5-1 * * * *", "*/0 * * * *",
                           "a * * * *", "* * 0 * *", "* * * 13 *", "* * * * 8"}) {
    v1::MaintenanceWindow w;
    w.set_cron(cron);
    w.set_duration_seconds(60);
    EXPECT_EQ(MaintenanceWindowCheck::Create(w).status().code(), absl::StatusCode::kInvalidArgument)
        << cron;
  }
  v1::MaintenanceWindow zone;
  zone.set_cron("0 2 * * *");
  zone.set_duration_seconds(60);
  zone.set_time_zone("Mars/Olympus");
  EXPECT_EQ(MaintenanceWindowCheck::Create(zone).status().code(),
            absl::StatusCode::kInvalidArgument);
  zone.set_time_zone("");
  zone.set_duration_seconds(0);
  EXPECT_EQ(MaintenanceWindowCheck::Create(zone).status().code(),
            absl::StatusCode::kInvalidArgument);
}

v1::RolloutGate Gate(const std::string& metric, const std::string& op, double threshold,
                     int64_t min_samples = 0) {
  v1::RolloutGate g;
  g.set_metric(metric);
  g.set_op(op);
  g.set_threshold(threshold);
  g.set_min_samples(min_samples);
  return g;
}

void SetAccuracy(v1::TelemetrySummary& s, int64_t correct, int64_t labelled, double low,
                 double high) {
  s.mutable_accuracy()->set_successes(correct);
  s.mutable_accuracy()->set_trials(labelled);
  s.mutable_accuracy()->set_value(static_cast<double>(correct) / labelled);
  s.mutable_accuracy()->set_low(low);
  s.mutable_accuracy()->set_high(high);
}

TEST(GateTest, InstallGatesCountSettledDevices) {
  WaveMeasurements m;
  m.counts.set_active(9);
  m.counts.set_failed(1);
  m.counts.set_pending(5);
  auto ratio = JudgeGate(Gate("install_success_ratio", ">=", 0.95), m);
  EXPECT_EQ(ratio.verdict(), "FAIL");
  EXPECT_DOUBLE_EQ(ratio.value(), 0.9);
  EXPECT_EQ(ratio.samples(), 10);
  EXPECT_EQ(JudgeGate(Gate("install_success_ratio", ">=", 0.9), m).verdict(), "PASS");
  EXPECT_EQ(JudgeGate(Gate("failed_installs", "<=", 0), m).verdict(), "FAIL");
  EXPECT_EQ(JudgeGate(Gate("failed_installs", "<=", 1), m).verdict(), "PASS");
  // Nothing settled yet: no verdict.
  WaveMeasurements fresh;
  fresh.counts.set_pending(3);
  EXPECT_EQ(JudgeGate(Gate("install_success_ratio", ">=", 1), fresh).verdict(), "INCONCLUSIVE");
}

TEST(GateTest, AccuracyFailsOnlyWhenTheIntervalSaysWorse) {
  WaveMeasurements m;
  m.has_replaced = true;
  // 80 % of 50 against 90 % of 5000: worse by 10 points, but the interval reaches past -2.
  SetAccuracy(m.candidate, 40, 50, 0.670, 0.888);
  SetAccuracy(m.replaced, 4500, 5000, 0.8915, 0.9081);
  const v1::RolloutGate gate = Gate("accuracy_delta", ">=", -2, 20);
  auto small = JudgeGate(gate, m);
  EXPECT_NEAR(small.value(), -10, 1e-9);
  EXPECT_GT(small.high(), -2);
  EXPECT_EQ(small.verdict(), "INCONCLUSIVE");
  // 80 % of 2000: the whole interval is more than 2 points worse.
  SetAccuracy(m.candidate, 1600, 2000, 0.782, 0.817);
  auto big = JudgeGate(gate, m);
  EXPECT_LT(big.high(), -2);
  EXPECT_EQ(big.verdict(), "FAIL");
  // As good: passes.
  SetAccuracy(m.candidate, 1810, 2000, 0.891, 0.917);
  EXPECT_EQ(JudgeGate(gate, m).verdict(), "PASS");
  // Too few labels: waits.
  SetAccuracy(m.candidate, 9, 10, 0.596, 0.982);
  EXPECT_EQ(JudgeGate(gate, m).verdict(), "INCONCLUSIVE");
  // Nothing to compare with: waits.
  m.has_replaced = false;
  EXPECT_EQ(JudgeGate(gate, m).verdict(), "INCONCLUSIVE");
}

TEST(GateTest, ErrorRateAndLatencyNeedTheirSamples) {
  WaveMeasurements m;
  m.candidate.set_requests(1000);
  m.candidate.mutable_errors()->set_value(0.02);
  m.candidate.set_latency_p95_us(150);
  EXPECT_EQ(JudgeGate(Gate("error_rate", "<=", 0.01, 100), m).verdict(), "FAIL");
  EXPECT_EQ(JudgeGate(Gate("error_rate", "<=", 0.05, 100), m).verdict(), "PASS");
  EXPECT_EQ(JudgeGate(Gate("error_rate", "<=", 0.05, 5000), m).verdict(), "INCONCLUSIVE");
  EXPECT_EQ(JudgeGate(Gate("latency_p95_ratio", "<=", 1.2, 100), m).verdict(), "INCONCLUSIVE");
  m.has_replaced = true;
  m.replaced.set_requests(5000);
  m.replaced.set_latency_p95_us(100);
  auto slow = JudgeGate(Gate("latency_p95_ratio", "<=", 1.2, 100), m);
  EXPECT_DOUBLE_EQ(slow.value(), 1.5);
  EXPECT_EQ(slow.verdict(), "FAIL");
}

TEST(GateTest, NormalizeFillsDefaultsAndRefusesUnknowns) {
  v1::RolloutGate g;
  g.set_metric("error_rate");
  ASSERT_TRUE(NormalizeGate(g).ok());
  EXPECT_EQ(g.op(), "<=");
  g.set_metric("vibes");
  EXPECT_EQ(NormalizeGate(g).code(), absl::StatusCode::kInvalidArgument);
  g.set_metric("error_rate");
  g.set_op("==");
  EXPECT_EQ(NormalizeGate(g).code(), absl::StatusCode::kInvalidArgument);
  g.set_op("<");
  g.set_min_samples(-1);
  EXPECT_EQ(NormalizeGate(g).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edgeloop::rollout
