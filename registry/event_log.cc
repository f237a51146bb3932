#include "registry/event_log.h"

#include <string>

#include "common/status.h"

namespace edgeloop::registry {

absl::Status AppendEvent(store::Transaction& tx, absl::string_view type, absl::string_view model,
                         int64_t version, absl::string_view alias, absl::string_view actor,
                         int64_t at_ms) {
  ASSIGN_OR_RETURN(store::Rows rows,
                   tx.Query("UPDATE registry_event_counter SET last_sequence = last_sequence + 1 "
                            "WHERE id = 1 RETURNING last_sequence"));
  if (rows.size() != 1) return absl::InternalError("registry event counter row is missing");
  return tx
      .Execute(
          "INSERT INTO registry_events (sequence, type, model, version, alias, actor, at_ms) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {rows[0].Int("last_sequence"), std::string(type), std::string(model), version,
           std::string(alias), std::string(actor), at_ms})
      .status();
}

}  // namespace edgeloop::registry
