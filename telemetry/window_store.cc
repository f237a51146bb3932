#include "telemetry/window_store.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/telemetry_window.h"

namespace edgeloop::telemetry {
namespace {

using store::Bytes;
using store::Rows;
using store::Value;

/// The windows of `rows`' body column; DATA_LOSS naming `whose` if one does not parse.
absl::StatusOr<std::vector<v1::TelemetryWindow>> ParseWindows(const Rows& rows,
                                                              const std::string& whose) {
  std::vector<v1::TelemetryWindow> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!out[i].ParseFromString(rows[i].Blob("body"))) {
      return absl::DataLossError(absl::StrCat("a stored window of ", whose, " does not parse"));
    }
  }
  return out;
}

int64_t FloorTo(int64_t value, int64_t step) { return value - ((value % step) + step) % step; }

// A raw window's key: (device, model id, version, start).
using WindowKey = std::tuple<std::string, int64_t, int64_t, int64_t>;
// An aggregate's key, in the order rows are taken: (model id, version, bucket, target, cohort).
using SeriesKey = std::tuple<int64_t, int64_t, int64_t, std::string, std::string>;

WindowKey KeyOf(const IncomingWindow& w) {
  return {w.device_id, w.model_id, w.window.version(), w.window.start_ms()};
}

/// Adds `sum` to the aggregate row of `key`, creating it first.
absl::Status AddToAggregate(store::Transaction& tx, store::Dialect dialect, const SeriesKey& key,
                            int64_t windows, const v1::TelemetryWindow& sum, int64_t now_ms) {
  const auto& [model_id, version, bucket, target, cohort] = key;
  const std::vector<Value> where = {model_id, version, bucket, target, cohort};
  std::vector<Value> create = where;
  create.push_back(now_ms);
  create.push_back(Bytes{v1::TelemetryWindow().SerializeAsString()});
  RETURN_IF_ERROR(tx.Execute("INSERT INTO telemetry_aggregates (model_id, version, bucket_ms, "
                             "target, cohort, windows, updated_ms, summary) VALUES ($1, $2, $3, "
                             "$4, $5, 0, $6, $7) ON CONFLICT DO NOTHING",
                             create)
                      .status());
  ASSIGN_OR_RETURN(
      Rows rows,
      tx.Query(absl::StrCat("SELECT windows, summary FROM telemetry_aggregates WHERE model_id = "
                            "$1 AND version = $2 AND bucket_ms = $3 AND target = $4 AND "
                            "cohort = $5",
                            dialect == store::Dialect::kPostgres ? " FOR UPDATE" : ""),
               where));
  if (rows.empty()) return absl::InternalError("an aggregate row vanished inside its transaction");
  v1::TelemetryWindow summary;
  if (!summary.ParseFromString(rows[0].Blob("summary"))) {
    return absl::DataLossError(absl::StrCat("the aggregate of model ", model_id, "@", version,
                                            " at ", bucket, " does not parse"));
  }
  MergeWindow(summary, sum, 0);
  std::vector<Value> update = where;
  update.push_back(rows[0].Int("windows") + windows);
  update.push_back(now_ms);
  update.push_back(Bytes{summary.SerializeAsString()});
  return tx
      .Execute(
          "UPDATE telemetry_aggregates SET windows = $6, updated_ms = $7, summary = $8 "
          "WHERE model_id = $1 AND version = $2 AND bucket_ms = $3 AND target = $4 AND "
          "cohort = $5",
          update)
      .status();
}

}  // namespace

absl::StatusOr<std::vector<bool>> WindowStore::Store(store::Transaction& tx, store::Dialect dialect,
                                                     const std::vector<IncomingWindow>& windows,
                                                     absl::Duration bucket, int64_t now_ms) {
  std::vector<bool> fresh(windows.size(), false);
  // One row per key: a window twice in one batch is stored once.
  std::map<WindowKey, size_t> first;
  std::vector<std::vector<Value>> rows;
  for (size_t i = 0; i < windows.size(); ++i) {
    const IncomingWindow& in = windows[i];
    if (!first.emplace(KeyOf(in), i).second) continue;
    const v1::TelemetryWindow& w = in.window;
    rows.push_back({in.device_id, in.model_id, w.version(), w.start_ms(), w.end_ms(), in.target,
                    in.cohort, w.requests(), w.errors(), now_ms, Bytes{w.SerializeAsString()}});
  }
  ASSIGN_OR_RETURN(
      Rows inserted,
      tx.BulkInsert("telemetry_windows",
                    {"device_id", "model_id", "version", "start_ms", "end_ms", "target", "cohort",
                     "requests", "errors", "received_ms", "body"},
                    rows,
                    "ON CONFLICT DO NOTHING RETURNING device_id, model_id, version, start_ms"));

  // What was new goes into the aggregates, summed per series first.
  const int64_t step = std::max<int64_t>(1, absl::ToInt64Milliseconds(bucket));
  std::map<SeriesKey, std::pair<int64_t, v1::TelemetryWindow>> sums;
  for (const store::Row& row : inserted) {
    const WindowKey key{row.Text("device_id"), row.Int("model_id"), row.Int("version"),
                        row.Int("start_ms")};
    auto it = first.find(key);
    if (it == first.end()) return absl::InternalError("an insert returned a row it was not given");
    fresh[it->second] = true;
    const IncomingWindow& in = windows[it->second];
    auto& [count, sum] = sums[{in.model_id, in.window.version(),
                               FloorTo(in.window.start_ms(), step), in.target, in.cohort}];
    if (count == 0) {
      sum.set_model(in.window.model());
      sum.set_version(in.window.version());
    }
    ++count;
    MergeWindow(sum, in.window, 0);
  }
  for (const auto& [key, value] : sums) {
    RETURN_IF_ERROR(AddToAggregate(tx, dialect, key, value.first, value.second, now_ms));
  }
  return fresh;
}

absl::StatusOr<std::string> WindowStore::Cohort(store::Transaction& tx, const std::string& value,
                                                int max_cohorts, int64_t now_ms) {
  if (value.empty()) return value;
  ASSIGN_OR_RETURN(Rows known,
                   tx.Query("SELECT slot FROM telemetry_cohorts WHERE value = $1", {value}));
  if (!known.empty()) return value;
  ASSIGN_OR_RETURN(Rows count, tx.Query("SELECT COUNT(*) AS n FROM telemetry_cohorts"));
  const int64_t slot = count.empty() ? 0 : count[0].Int("n");
  if (slot >= max_cohorts) return std::string(kOtherCohort);
  // Two replicas taking the same slot: one fails on the key and its batch is retried.
  absl::StatusOr<int64_t> added =
      tx.Execute("INSERT INTO telemetry_cohorts (slot, value, created_ms) VALUES ($1, $2, $3)",
                 {slot, value, now_ms});
  if (absl::IsAlreadyExists(added.status())) {
    return absl::AbortedError("another replica took the cohort slot; retry");
  }
  RETURN_IF_ERROR(added.status());
  return value;
}

absl::StatusOr<std::vector<std::string>> WindowStore::Cohorts(store::Reader& db) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT value FROM telemetry_cohorts ORDER BY slot"));
  std::vector<std::string> out;
  for (const store::Row& r : rows) out.push_back(r.Text("value"));
  return out;
}

absl::Status WindowStore::CountReport(store::Transaction& tx, const std::string& device_id,
                                      int64_t stored, int64_t refused, int64_t dropped,
                                      const std::string& last_refusal, int64_t now_ms) {
  return tx
      .Execute(
          "INSERT INTO telemetry_devices (device_id, windows_stored, windows_refused, "
          "windows_dropped, last_report_ms, last_refusal) VALUES ($1, $2, $3, $4, $5, $6) "
          "ON CONFLICT (device_id) DO UPDATE SET "
          "windows_stored = telemetry_devices.windows_stored + excluded.windows_stored, "
          "windows_refused = telemetry_devices.windows_refused + excluded.windows_refused, "
          "windows_dropped = telemetry_devices.windows_dropped + excluded.windows_dropped, "
          "last_report_ms = excluded.last_report_ms, "
          "last_refusal = CASE WHEN excluded.last_refusal = '' "
          "THEN telemetry_devices.last_refusal ELSE excluded.last_refusal END",
          {device_id, stored, refused, dropped, now_ms, last_refusal})
      .status();
}

absl::StatusOr<std::optional<DeviceReports>> WindowStore::Reports(store::Reader& db,
                                                                  const std::string& device_id) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT windows_stored, windows_refused, windows_dropped, "
                                       "last_report_ms, last_refusal FROM telemetry_devices "
                                       "WHERE device_id = $1",
                                       {device_id}));
  if (rows.empty()) return std::nullopt;
  const store::Row& r = rows[0];
  return DeviceReports{.windows_stored = r.Int("windows_stored"),
                       .windows_refused = r.Int("windows_refused"),
                       .windows_dropped = r.Int("windows_dropped"),
                       .last_report_ms = r.Int("last_report_ms"),
                       .last_refusal = r.Text("last_refusal")};
}

absl::StatusOr<std::vector<Aggregate>> WindowStore::Aggregates(store::Reader& db, int64_t model_id,
                                                               std::optional<int64_t> version,
                                                               std::optional<std::string> cohort,
                                                               int64_t from_ms, int64_t to_ms) {
  std::string sql =
      "SELECT version, target, cohort, bucket_ms, windows, summary FROM telemetry_aggregates "
      "WHERE model_id = $1 AND bucket_ms >= $2 AND bucket_ms < $3";
  std::vector<Value> params = {model_id, from_ms, to_ms};
  if (version.has_value()) {
    params.push_back(*version);
    absl::StrAppend(&sql, " AND version = $", params.size());
  }
  if (cohort.has_value()) {
    params.push_back(*cohort);
    absl::StrAppend(&sql, " AND cohort = $", params.size());
  }
  absl::StrAppend(&sql, " ORDER BY bucket_ms, version, target, cohort");
  ASSIGN_OR_RETURN(Rows rows, db.Query(sql, params));
  std::vector<Aggregate> out;
  out.reserve(rows.size());
  for (const store::Row& r : rows) {
    Aggregate a{.version = r.Int("version"),
                .target = r.Text("target"),
                .cohort = r.Text("cohort"),
                .bucket_ms = r.Int("bucket_ms"),
                .windows = r.Int("windows"),
                .summary = {}};
    if (!a.summary.ParseFromString(r.Blob("summary"))) {
      return absl::DataLossError(
          absl::StrCat("an aggregate of model ", model_id, " at ", a.bucket_ms, " does not parse"));
    }
    out.push_back(std::move(a));
  }
  return out;
}

absl::StatusOr<std::vector<v1::TelemetryWindow>> WindowStore::DeviceWindows(
    store::Reader& db, const std::string& device_id, int64_t from_ms, int64_t to_ms, int limit) {
  ASSIGN_OR_RETURN(Rows rows,
                   db.Query("SELECT body FROM telemetry_windows WHERE device_id = $1 AND "
                            "start_ms >= $2 AND start_ms < $3 ORDER BY start_ms DESC, model_id, "
                            "version LIMIT $4",
                            {device_id, from_ms, to_ms, int64_t{limit}}));
  return ParseWindows(rows, device_id);
}

absl::StatusOr<std::vector<v1::TelemetryWindow>> WindowStore::VersionWindows(store::Reader& db,
                                                                             int64_t model_id,
                                                                             int64_t version,
                                                                             int limit) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT body FROM telemetry_windows WHERE model_id = $1 AND "
                                       "version = $2 ORDER BY start_ms, device_id LIMIT $3",
                                       {model_id, version, int64_t{limit}}));
  return ParseWindows(rows, absl::StrCat("model ", model_id, "@", version));
}

absl::StatusOr<WindowSum> WindowStore::SumWindows(store::Reader& db, int64_t model_id,
                                                  int64_t version,
                                                  const std::set<std::string>* devices,
                                                  int64_t from_ms, int64_t to_ms) {
  constexpr int64_t kBatch = 1000;
  WindowSum out;
  // Keyset paging on the primary key's order within the version index's range.
  int64_t after_start = from_ms - 1;
  std::string after_device;
  while (true) {
    ASSIGN_OR_RETURN(
        Rows rows,
        db.Query("SELECT device_id, start_ms, body FROM telemetry_windows WHERE model_id = $1 AND "
                 "version = $2 AND start_ms < $4 AND (start_ms > $3 OR (start_ms = $3 AND "
                 "device_id > $5)) ORDER BY start_ms, device_id LIMIT $6",
                 {model_id, version, after_start, to_ms, after_device, kBatch}));
    for (const store::Row& row : rows) {
      if (devices != nullptr && !devices->count(row.Text("device_id"))) continue;
      v1::TelemetryWindow window;
      if (!window.ParseFromString(row.Blob("body"))) {
        return absl::DataLossError(
            absl::StrCat("a stored window of model ", model_id, "@", version, " does not parse"));
      }
      MergeWindow(out.sum, window, 0);
      ++out.windows;
    }
    if (static_cast<int64_t>(rows.size()) < kBatch) return out;
    after_start = rows.back().Int("start_ms");
    after_device = rows.back().Text("device_id");
  }
}

absl::StatusOr<int64_t> WindowStore::Prune(store::Transaction& tx, int64_t raw_before_ms,
                                           int64_t aggregates_before_ms) {
  ASSIGN_OR_RETURN(int64_t raw,
                   tx.Execute("DELETE FROM telemetry_windows WHERE end_ms < $1", {raw_before_ms}));
  ASSIGN_OR_RETURN(int64_t sums, tx.Execute("DELETE FROM telemetry_aggregates WHERE bucket_ms < $1",
                                            {aggregates_before_ms}));
  return raw + sums;
}

}  // namespace edgeloop::telemetry
