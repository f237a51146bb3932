#pragma once

#include <bitset>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "edgeloop/v1/rollout.pb.h"

namespace edgeloop::rollout {

/// A cron expression: five fields (minute, hour, day of month, month, day of week), each `*`,
/// a number, a range `a-b`, a list `a,b` and any of these with a step `/n`; day of week 0-7
/// with 0 and 7 Sunday. As in Vixie cron, when both day fields are restricted a day matching
/// either one matches.
class CronExpression {
 public:
  /// INVALID_ARGUMENT naming the field and the problem.
  static absl::StatusOr<CronExpression> Parse(absl::string_view text);
  /// Whether the expression fires at this minute.
  bool Matches(absl::CivilMinute minute) const;

 private:
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;
  std::bitset<13> months_;
  std::bitset<8> weekdays_;  // 0 = Sunday
  bool any_day_ = true;      // day of month was `*`
  bool any_weekday_ = true;  // day of week was `*`
};

/// When a rollout may update devices: from every time the cron expression fires, in the time
/// zone, for the duration. An empty cron means always.
class MaintenanceWindowCheck {
 public:
  /// INVALID_ARGUMENT for a bad expression, an unknown time zone, or a duration outside
  /// (0, 7 days].
  static absl::StatusOr<MaintenanceWindowCheck> Create(const v1::MaintenanceWindow& window);
  bool Open(absl::Time now) const;

 private:
  bool always_ = true;
  CronExpression cron_;
  absl::Duration duration_;
  absl::TimeZone zone_;
};

}  // namespace edgeloop::rollout
