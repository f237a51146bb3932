#include "rollout/wave_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace edgeloop::rollout {

absl::StatusOr<WavePlan> WavePlan::FromSpec(const v1::RolloutSpec& spec) {
  const bool rate = spec.has_rate();
  if ((spec.waves_size() > 0) + (spec.wave_counts_size() > 0) + rate > 1) {
    return absl::InvalidArgumentError("give one of waves (percentages), waveCounts and rate");
  }
  WavePlan plan;
  if (rate) {
    plan.kind_ = Kind::kExponential;
    plan.start_ = spec.rate().start();
    plan.factor_ = spec.rate().factor();
    plan.max_per_minute_ = spec.rate().max_per_minute();
    if (plan.start_ < 1) return absl::InvalidArgumentError("rate.start must be at least 1");
    if (!(plan.factor_ > 1) || !(plan.factor_ <= 100)) {
      return absl::InvalidArgumentError("rate.factor must be above 1 and at most 100");
    }
    if (plan.max_per_minute_ < 0) {
      return absl::InvalidArgumentError("rate.maxPerMinute must not be negative");
    }
    return plan;
  }
  if (spec.wave_counts_size() > 0) {
    plan.kind_ = Kind::kCount;
    for (int64_t c : spec.wave_counts()) {
      if (c < 1) return absl::InvalidArgumentError("a wave count must be at least 1");
      if (!plan.steps_.empty() && c <= plan.steps_.back()) {
        return absl::InvalidArgumentError(
            absl::StrCat("wave counts must increase (", c, " after ", plan.steps_.back(), ")"));
      }
      plan.steps_.push_back(static_cast<double>(c));
    }
  } else {
    for (double p : spec.waves()) {
      if (!(p > 0) || !(p <= 100)) {
        return absl::InvalidArgumentError(
            absl::StrCat("a wave must be above 0 % and at most 100 % (", p, ")"));
      }
      if (!plan.steps_.empty() && p <= plan.steps_.back()) {
        return absl::InvalidArgumentError(
            absl::StrCat("waves must increase (", p, " % after ", plan.steps_.back(), " %)"));
      }
      plan.steps_.push_back(p);
    }
    if (plan.steps_.empty() || plan.steps_.back() < 100) plan.steps_.push_back(100);
  }
  if (static_cast<int>(plan.steps_.size()) + 1 > kMaxWaves) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxWaves - 1, " waves"));
  }
  return plan;
}

std::vector<int64_t> WavePlan::Cumulative(int64_t matching) const {
  std::vector<int64_t> out;
  auto add = [&](int64_t n) {
    n = std::clamp<int64_t>(n, 0, matching);
    // At least one more device than the wave before, while any is left.
    const int64_t before = out.empty() ? 0 : out.back();
    out.push_back(std::max(n, std::min(before + 1, matching)));
  };
  switch (kind_) {
    case Kind::kPercent:
      for (double p : steps_) {
        add(p >= 100 ? matching : static_cast<int64_t>(std::ceil(p * matching / 100.0 - 1e-9)));
      }
      break;
    case Kind::kCount:
      for (double c : steps_) add(static_cast<int64_t>(c));
      add(matching);
      break;
    case Kind::kExponential: {
      double size = static_cast<double>(start_);
      double total = 0;
      while (static_cast<int>(out.size()) < kMaxWaves - 1 && total + size < matching) {
        total += size;
        add(static_cast<int64_t>(total));
        size *= factor_;
      }
      add(matching);
      break;
    }
  }
  return out;
}

std::string WavePlan::Label(int index, int64_t matching) const {
  switch (kind_) {
    case Kind::kPercent:
      if (index >= 0 && index < static_cast<int>(steps_.size())) {
        return absl::StrCat(steps_[index], "%");
      }
      break;
    case Kind::kCount:
      if (index >= 0 && index < static_cast<int>(steps_.size())) {
        return absl::StrCat(static_cast<int64_t>(steps_[index]), " devices");
      }
      return "all";
    case Kind::kExponential: {
      const std::vector<int64_t> waves = Cumulative(matching);
      if (index >= 0 && index + 1 < static_cast<int>(waves.size())) {
        return absl::StrCat(waves[index], " devices");
      }
      return "all";
    }
  }
  return "all";
}

}  // namespace edgeloop::rollout
