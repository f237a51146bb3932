#include "rollout/maintenance_window.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace edgeloop::rollout {
namespace {

// Sets in `bits` the values one field selects; `lo`..`hi` is the field's range.
template <size_t N>
absl::Status ParseField(absl::string_view text, const char* name, int lo, int hi,
                        std::bitset<N>& bits) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron ", name, " field \"", text.substr(0, 32), "\": ", why));
  };
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int step = 1;
    const bool stepped = part.find('/') != absl::string_view::npos;
    if (size_t slash = part.find('/'); slash != absl::string_view::npos) {
      if (!absl::SimpleAtoi(part.substr(slash + 1), &step) || step < 1 || step > hi) {
        return bad("the step must be a number from 1");
      }
      part = part.substr(0, slash);
    }
    int from = lo;
    int to = hi;
    if (part != "*") {
      if (size_t dash = part.find('-'); dash != absl::string_view::npos) {
        if (!absl::SimpleAtoi(part.substr(0, dash), &from) ||
            !absl::SimpleAtoi(part.substr(dash + 1), &to)) {
          return bad("a range must be two numbers");
        }
      } else {
        if (!absl::SimpleAtoi(part, &from)) return bad("expected *, a number or a range");
        // `n/step` runs from n to the end of the range, as cron reads it.
        to = stepped ? hi : from;
      }
      if (from < lo || to > hi || from > to) {
        return bad(absl::StrCat("values must lie in ", lo, "-", hi, " and ranges increase"));
      }
    }
    for (int v = from; v <= to; v += step) bits.set(v);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CronExpression> CronExpression::Parse(absl::string_view text) {
  std::vector<absl::string_view> fields = absl::StrSplit(text, ' ', absl::SkipWhitespace());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a cron expression has five fields (minute hour day month weekday), got ", fields.size()));
  }
  CronExpression cron;
  if (auto s = ParseField(fields[0], "minute", 0, 59, cron.minutes_); !s.ok()) return s;
  if (auto s = ParseField(fields[1], "hour", 0, 23, cron.hours_); !s.ok()) return s;
  if (auto s = ParseField(fields[2], "day-of-month", 1, 31, cron.days_); !s.ok()) return s;
  if (auto s = ParseField(fields[3], "month", 1, 12, cron.months_); !s.ok()) return s;
  if (auto s = ParseField(fields[4], "day-of-week", 0, 7, cron.weekdays_); !s.ok()) return s;
  if (cron.weekdays_.test(7)) cron.weekdays_.set(0);
  cron.any_day_ = fields[2] == "*";
  cron.any_weekday_ = fields[4] == "*";
  return cron;
}

bool CronExpression::Matches(absl::CivilMinute minute) const {
  if (!minutes_.test(minute.minute()) || !hours_.test(minute.hour()) ||
      !months_.test(minute.month())) {
    return false;
  }
  const absl::Weekday w = absl::GetWeekday(absl::CivilDay(minute));
  // absl numbers Monday 0 … Sunday 6; cron Sunday 0 … Saturday 6.
  const int weekday = (static_cast<int>(w) + 1) % 7;
  const bool day = days_.test(minute.day());
  const bool wday = weekdays_.test(weekday);
  if (any_day_ && any_weekday_) return true;
  if (any_day_) return wday;
  if (any_weekday_) return day;
  return day || wday;
}

absl::StatusOr<MaintenanceWindowCheck> MaintenanceWindowCheck::Create(
    const v1::MaintenanceWindow& window) {
  MaintenanceWindowCheck check;
  if (window.cron().empty()) {
    if (window.duration_seconds() != 0 || !window.time_zone().empty()) {
      return absl::InvalidArgumentError("a maintenance window needs a cron expression");
    }
    return check;
  }
  absl::StatusOr<CronExpression> cron = CronExpression::Parse(window.cron());
  if (!cron.ok()) return cron.status();
  if (window.duration_seconds() <= 0 || window.duration_seconds() > 7 * 24 * 3600) {
    return absl::InvalidArgumentError("a maintenance window's duration must be from 1 s to 7 days");
  }
  check.zone_ = absl::UTCTimeZone();
  if (!window.time_zone().empty() && !absl::LoadTimeZone(window.time_zone(), &check.zone_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown time zone \"", window.time_zone().substr(0, 64), "\""));
  }
  check.always_ = false;
  check.cron_ = *std::move(cron);
  check.duration_ = absl::Seconds(window.duration_seconds());
  return check;
}

bool MaintenanceWindowCheck::Open(absl::Time now) const {
  if (always_) return true;
  // Open when the expression fired at a minute in (now - duration, now]: walk back minute by
  // minute (at most 7 days of them) in the window's zone.
  const absl::CivilMinute at = absl::ToCivilMinute(now, zone_);
  for (absl::CivilMinute m = at;; --m) {
    const absl::Time start = absl::FromCivil(m, zone_);
    if (start + duration_ <= now) return false;
    if (cron_.Matches(m)) return true;
  }
}

}  // namespace edgeloop::rollout
