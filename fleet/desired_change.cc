#include "fleet/desired_change.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace edgeloop::fleet {

absl::Status PublishDesiredChange(store::Transaction& tx, const std::vector<std::string>& ids) {
  if (ids.empty()) return tx.Publish(kDesiredChangeChannel, "");
  // PostgreSQL takes payloads under 8,000 bytes.
  constexpr size_t kPayload = 7900;
  std::string payload;
  for (const std::string& id : ids) {
    if (id.empty() || id.size() > kPayload) continue;  // "" would mean every device
    if (!payload.empty() && payload.size() + 1 + id.size() > kPayload) {
      RETURN_IF_ERROR(tx.Publish(kDesiredChangeChannel, payload));
      payload.clear();
    }
    absl::StrAppend(&payload, payload.empty() ? "" : ",", id);
  }
  if (!payload.empty()) RETURN_IF_ERROR(tx.Publish(kDesiredChangeChannel, payload));
  return absl::OkStatus();
}

std::vector<std::string> ParseDesiredChange(absl::string_view payload) {
  return absl::StrSplit(payload, ',', absl::SkipEmpty());
}

}  // namespace edgeloop::fleet
