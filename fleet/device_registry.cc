#include "fleet/device_registry.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/failpoint.h"
#include "common/hardware.h"
#include "common/names.h"
#include "common/paging.h"
#include "common/proto_json.h"
#include "common/random.h"
#include "common/status.h"
#include "common/x509.h"
#include "fleet/desired_change.h"
#include "fleet/profile_validation.h"
#include "fleet/selector.h"
#include "google/protobuf/util/time_util.h"

namespace edgeloop::fleet {
namespace {

using google::protobuf::util::TimeUtil;
using store::Rows;
using store::Transaction;


// What makes a Device, and the hardware fields selectors read.
constexpr char kColumns[] =
    "id, serial, labels, profile, status, state, enrollment_token_id, cert_expires_at_ms, "
    "enrolled_at_ms, "
    "last_seen_ms, generation, target, arch, ram_mb, storage_mb, cores, accel";

std::string LabelsJson(const google::protobuf::Map<std::string, std::string>& labels) {
  v1::Device labels_only;
  *labels_only.mutable_labels() = labels;
  return PrintProtoJson(labels_only);
}

std::string AcceleratorKinds(const v1::HardwareProfile& profile) {
  std::set<std::string> kinds;
  for (const auto& a : profile.accelerators()) kinds.insert(a.kind());
  return absl::StrJoin(kinds, ",");
}

absl::Status NoSuchDevice(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("device \"", id.substr(0, 64), "\" not found"));
}

absl::Status Decommissioned(absl::string_view id) {
  return absl::PermissionDeniedError(absl::StrCat("device \"", id, "\" has been decommissioned"));
}

// What a selector sees of a device row: its labels and the hw.* fields.
absl::StatusOr<Attributes> AttributesOf(const store::Row& row) {
  v1::Device labels;
  RETURN_IF_ERROR(ParseProtoJson(row.Text("labels"), &labels, true));
  Attributes a;
  for (const auto& [k, v] : labels.labels()) a[k] = {v};
  a["hw.target"] = {row.Text("target")};
  a["hw.arch"] = {row.Text("arch")};
  a["hw.ram_mb"] = {row.Text("ram_mb")};
  a["hw.storage_mb"] = {row.Text("storage_mb")};
  a["hw.cores"] = {row.Text("cores")};
  if (!row.Text("accel").empty()) a["hw.accel"] = absl::StrSplit(row.Text("accel"), ',');
  return a;
}

}  // namespace

absl::StatusOr<v1::Device> DeviceRegistry::DeviceFromRow(const store::Row& row) const {
  v1::Device device;
  RETURN_IF_ERROR(ParseProtoJson(row.Text("labels"), &device, true));
  RETURN_IF_ERROR(ParseProtoJson(row.Text("profile"), device.mutable_profile(), true));
  RETURN_IF_ERROR(ParseProtoJson(row.Text("state"), device.mutable_state(), true));
  device.set_id(row.Text("id"));
  device.set_serial(row.Text("serial"));
  v1::DeviceStatus status = v1::DEVICE_STATUS_UNSPECIFIED;
  v1::DeviceStatus_Parse(row.Text("status"), &status);
  device.set_status(status);
  device.set_enrollment_token_id(row.Text("enrollment_token_id"));
  *device.mutable_cert_expire_time() = TimeUtil::MillisecondsToTimestamp(row.Int("cert_expires_at_ms"));
  *device.mutable_enroll_time() = TimeUtil::MillisecondsToTimestamp(row.Int("enrolled_at_ms"));
  *device.mutable_last_seen_time() = TimeUtil::MillisecondsToTimestamp(row.Int("last_seen_ms"));
  device.set_online(status == v1::ACTIVE && absl::FromUnixMillis(row.Int("last_seen_ms")) >
                                                options_.clock->Now() - options_.offline_after);
  return device;
}

absl::StatusOr<v1::EnrollResponse> DeviceRegistry::Enroll(const v1::EnrollRequest& request) {
  if (request.serial().size() > 128)
    return absl::InvalidArgumentError("serial is longer than 128 characters");
  if (request.device_id().size() > 64)
    return absl::InvalidArgumentError("deviceId is longer than 64 characters");
  if (request.csr_pem().empty()) return absl::InvalidArgumentError("csrPem is required");
  if (request.csr_pem().size() > 16 * 1024)
    return absl::InvalidArgumentError("csrPem is larger than 16 KiB");
  RETURN_IF_ERROR(ValidateProfile(request.profile()));
  // A wrong secret is refused here, by a read: guessing never queues for the write lock.
  ASSIGN_OR_RETURN(v1::EnrollmentToken checked, options_.tokens->Check(request.token()));
  absl::StatusOr<std::string> key = crypto::CsrKeyPin(request.csr_pem());
  if (!key.ok()) return absl::InvalidArgumentError(key.status().message());
  const absl::Time now = options_.clock->Now();
  v1::EnrollResponse response;
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(std::string id, EnrollDevice(tx, request, checked, *key, now));
    ASSIGN_OR_RETURN(std::string cert, options_.ca->SignClientCsr(request.csr_pem(), id, now,
                                                                  options_.cert_validity));
    response.set_device_id(id);
    response.set_cert_pem(std::move(cert));
    response.set_ca_pem(options_.ca->cert_pem());
    *response.mutable_module_signing_key() = options_.module_signing_key;
    return absl::OkStatus();
  }));
  Failpoint("fleet.enrolled");  // committed, not yet answered: the answer a network can lose
  return response;
}

absl::StatusOr<std::string> DeviceRegistry::EnrollDevice(Transaction& tx,
                                                         const v1::EnrollRequest& request,
                                                         const v1::EnrollmentToken& checked,
                                                         const std::string& key, absl::Time now) {
  v1::HardwareProfile profile = request.profile();
  profile.set_target(DeriveTargetClass(profile));  // the server decides, not the device's claim
  const int64_t cert_expires = absl::ToUnixMillis(now + options_.cert_validity);
  const int64_t now_ms = absl::ToUnixMillis(now);

  if (request.device_id().empty()) {
    // A retry whose first answer was lost: the same token, key and serial found their device.
    ASSIGN_OR_RETURN(Rows earlier,
                     tx.Query("SELECT id, status FROM devices WHERE enrollment_token_id = $1 AND "
                              "enrollment_key = $2 AND serial = $3",
                              {checked.id(), key, request.serial()}));
    if (!earlier.empty()) {
      const std::string id = earlier[0].Text("id");
      if (earlier[0].Text("status") != "ACTIVE") return Decommissioned(id);
      if (checked.has_revoke_time())
        return absl::PermissionDeniedError("enrollment token has been revoked");
      if (TimeUtil::TimestampToMilliseconds(checked.expire_time()) <= now_ms)
        return absl::PermissionDeniedError("enrollment token has expired");
      RETURN_IF_ERROR(tx.Execute("UPDATE devices SET cert_expires_at_ms = $2, last_seen_ms = $3 "
                                 "WHERE id = $1",
                                 {id, cert_expires, now_ms})
                          .status());
      return id;
    }
  }

  ASSIGN_OR_RETURN(v1::EnrollmentToken token, options_.tokens->Spend(tx, request.token()));
  if (!request.device_id().empty()) {
    // Re-enrollment: the new token is the operator's word, the old key the device's proof.
    ASSIGN_OR_RETURN(Rows rows, tx.Query("SELECT status, enrollment_key, labels FROM devices "
                                         "WHERE id = $1",
                                         {request.device_id()}));
    if (rows.empty()) return NoSuchDevice(request.device_id());
    if (rows[0].Text("status") != "ACTIVE") return Decommissioned(request.device_id());
    if (rows[0].Text("enrollment_key").empty() || rows[0].Text("enrollment_key") != key) {
      return absl::PermissionDeniedError(absl::StrCat(
          "device \"", request.device_id(),
          "\" enrolled with another key: only that key can re-enroll it"));
    }
    v1::Device existing;
    RETURN_IF_ERROR(ParseProtoJson(rows[0].Text("labels"), &existing, true));
    google::protobuf::Map<std::string, std::string> labels = existing.labels();
    for (const auto& [k, v] : token.labels()) labels[k] = v;
    RETURN_IF_ERROR(tx.Execute("UPDATE devices SET enrollment_token_id = $2, labels = $3, "
                               "cert_expires_at_ms = $4, last_seen_ms = $5, "
                               "generation = generation + 1 WHERE id = $1",
                               {request.device_id(), token.id(), LabelsJson(labels),
                                cert_expires, now_ms})
                        .status());
    RETURN_IF_ERROR(PublishDesiredChange(tx, {request.device_id()}));
    return request.device_id();
  }

  const std::string id = absl::StrCat("dev-", RandomHex(8));
  // Operator-given token labels win over labels the agent was started with.
  google::protobuf::Map<std::string, std::string> labels = profile.labels();
  for (const auto& [k, v] : token.labels()) labels[k] = v;
  RETURN_IF_ERROR(
      tx.Execute("INSERT INTO devices (id, serial, labels, profile, profile_hash, target, arch, "
                 "ram_mb, storage_mb, cores, accel, status, state, enrollment_token_id, "
                 "enrollment_key, cert_expires_at_ms, enrolled_at_ms, last_seen_ms, generation) "
                 "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'ACTIVE', '{}', $12, $13, "
                 "$14, $15, $15, 1)",
                 {id, request.serial(), LabelsJson(labels), PrintProtoJson(profile),
                  ProfileHash(request.profile()), profile.target(), profile.arch(),
                  profile.ram_mb(), profile.storage_mb(), int64_t{profile.cores()},
                  AcceleratorKinds(profile), token.id(), key, cert_expires, now_ms})
          .status());
  return id;
}

absl::Status DeviceRegistry::CheckActive(absl::string_view device_id) {
  ASSIGN_OR_RETURN(Rows rows, options_.database->Query("SELECT status FROM devices WHERE id = $1",
                                                       {std::string(device_id)}));
  if (rows.empty()) return NoSuchDevice(device_id);
  if (rows[0].Text("status") != "ACTIVE") return Decommissioned(device_id);
  return absl::OkStatus();
}

absl::StatusOr<DeviceFacts> DeviceRegistry::Facts(store::Reader& db,
                                                 absl::string_view device_id) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT status, target, labels FROM devices WHERE id = $1",
                                       {std::string(device_id)}));
  if (rows.empty()) return NoSuchDevice(device_id);
  if (rows[0].Text("status") != "ACTIVE") return Decommissioned(device_id);
  v1::Device labels;
  RETURN_IF_ERROR(ParseProtoJson(rows[0].Text("labels"), &labels, true));
  DeviceFacts facts;
  facts.target = rows[0].Text("target");
  facts.labels.insert(labels.labels().begin(), labels.labels().end());
  return facts;
}

absl::StatusOr<v1::SyncResponse> DeviceRegistry::Sync(absl::string_view device_id,
                                                      const v1::SyncRequest& request) {
  if (!request.device_id().empty() && request.device_id() != device_id) {
    return absl::PermissionDeniedError(absl::StrCat("device \"", device_id, "\" cannot act as \"",
                                                    request.device_id().substr(0, 64), "\""));
  }
  RETURN_IF_ERROR(ValidateDeviceState(request.state()));
  const int64_t now = absl::ToUnixMillis(options_.clock->Now());
  Rows rows;
  if (request.has_profile()) {
    RETURN_IF_ERROR(ValidateProfile(request.profile()));
    v1::HardwareProfile profile = request.profile();
    profile.set_target(DeriveTargetClass(profile));
    ASSIGN_OR_RETURN(
        rows,
        sync_writes_.Run(
            std::string(device_id),
            absl::StrCat(
                "UPDATE devices SET state = $2, last_seen_ms = $3, profile = $4, profile_hash = "
                "$5, target = $6, arch = $7, ram_mb = $8, storage_mb = $9, cores = $10, accel = "
                "$11 WHERE id = $1 AND status = 'ACTIVE' RETURNING ",
                kColumns, ", profile_hash"),
            {std::string(device_id), PrintProtoJson(request.state()), now, PrintProtoJson(profile),
             ProfileHash(request.profile()), profile.target(), profile.arch(), profile.ram_mb(),
             profile.storage_mb(), int64_t{profile.cores()}, AcceleratorKinds(profile)}));
  } else {
    ASSIGN_OR_RETURN(
        rows,
        sync_writes_.Run(
            std::string(device_id),
            absl::StrCat("UPDATE devices SET state = $2, last_seen_ms = $3 WHERE id = $1 AND "
                         "status = 'ACTIVE' RETURNING ",
                         kColumns, ", profile_hash"),
            {std::string(device_id), PrintProtoJson(request.state()), now}));
  }
  if (rows.empty()) {
    RETURN_IF_ERROR(CheckActive(device_id));
    return NoSuchDevice(device_id);
  }
  v1::SyncResponse response;
  response.set_send_profile(rows[0].Text("profile_hash") != request.state().profile_hash());
  RETURN_IF_ERROR(FillDesired(rows[0], &response));
  response.set_next_sync_ms(absl::ToInt64Milliseconds(options_.pacer->Next()));
  return response;
}

absl::StatusOr<v1::SyncResponse> DeviceRegistry::DesiredState(absl::string_view device_id) {
  ASSIGN_OR_RETURN(Rows rows, options_.database->Query(
                                  absl::StrCat("SELECT ", kColumns, " FROM devices WHERE id = $1"),
                                  {std::string(device_id)}));
  if (rows.empty()) return NoSuchDevice(device_id);
  if (rows[0].Text("status") != "ACTIVE") return Decommissioned(device_id);
  v1::SyncResponse response;
  RETURN_IF_ERROR(FillDesired(rows[0], &response));
  return response;
}

absl::StatusOr<v1::RenewResponse> DeviceRegistry::Renew(absl::string_view device_id,
                                                        const v1::RenewRequest& request) {
  RETURN_IF_ERROR(CheckActive(device_id));
  const absl::Time now = options_.clock->Now();
  v1::RenewResponse response;
  ASSIGN_OR_RETURN(
      *response.mutable_cert_pem(),
      options_.ca->SignClientCsr(request.csr_pem(), device_id, now, options_.cert_validity));
  // The key of the newest certificate is the one that may re-enroll the device once that
  // certificate has lapsed (and devices enrolled before keys were recorded gain one here).
  ASSIGN_OR_RETURN(std::string key, crypto::CsrKeyPin(request.csr_pem()));
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](Transaction& tx) {
    return tx
        .Execute("UPDATE devices SET cert_expires_at_ms = $2, enrollment_key = $3 WHERE id = $1",
                 {std::string(device_id), absl::ToUnixMillis(now + options_.cert_validity), key})
        .status();
  }));
  return response;
}

absl::StatusOr<int64_t> DeviceRegistry::Generation(absl::string_view device_id) {
  ASSIGN_OR_RETURN(Rows rows,
                   options_.database->Query("SELECT generation, status FROM devices WHERE id = $1",
                                            {std::string(device_id)}));
  if (rows.empty()) return NoSuchDevice(device_id);
  if (rows[0].Text("status") != "ACTIVE") return Decommissioned(device_id);
  ASSIGN_OR_RETURN(int64_t fleet_generation, FleetGeneration());
  return rows[0].Int("generation") + fleet_generation;
}

absl::StatusOr<absl::flat_hash_map<std::string, int64_t>> DeviceRegistry::Generations() {
  // The fleet's part first, as FillDesired does: a change in between shows up as a newer
  // generation next time, never as a stale one.
  ASSIGN_OR_RETURN(int64_t fleet_generation, FleetGeneration());
  ASSIGN_OR_RETURN(Rows rows, options_.database->Query(
                                  "SELECT id, generation FROM devices WHERE status = 'ACTIVE'"));
  absl::flat_hash_map<std::string, int64_t> out;
  out.reserve(rows.size());
  for (const store::Row& row : rows) {
    out.emplace(row.Text("id"), row.Int("generation") + fleet_generation);
  }
  return out;
}

absl::StatusOr<int64_t> DeviceRegistry::FleetGeneration() {
  if (options_.assignments == nullptr) return 0;
  return options_.assignments->Generation();
}

absl::Status DeviceRegistry::FillDesired(const store::Row& row, v1::SyncResponse* out) {
  // Read the generation (the device's plus the fleet's) before the desired state: a change
  // in between shows up as a newer generation next time, never as a stale state under a new
  // number.
  ASSIGN_OR_RETURN(int64_t fleet_generation, FleetGeneration());
  out->set_desired_generation(row.Int("generation") + fleet_generation);
  out->set_module_signing_key(options_.module_signing_key.key_pem());
  *out->mutable_module_signing_key_trust() = options_.module_signing_key;
  if (options_.assignments == nullptr || row.Text("status") != "ACTIVE") return absl::OkStatus();
  ASSIGN_OR_RETURN(Attributes attributes, AttributesOf(row));
  return options_.assignments->DesiredFor(row.Text("id"), attributes, row.Text("target"), out);
}

void DeviceRegistry::Notify(absl::string_view device_id) {
  if (on_change_) on_change_(device_id);
}

void DeviceRegistry::SetChangeListener(std::function<void(absl::string_view)> listener) {
  on_change_ = std::move(listener);
}

void DeviceRegistry::WakeAllWatchers() { Notify(""); }

void DeviceRegistry::WakeWatchers(const std::vector<std::string>& device_ids) {
  for (const std::string& id : device_ids) Notify(id);
}

absl::Status DeviceRegistry::TouchDevices(store::Transaction& tx,
                                          const std::vector<std::string>& unordered) {
  // In id order, as the syncs' group commits take the same rows: two transactions never wait
  // for each other's rows the other way round.
  std::vector<std::string> ids = unordered;
  std::sort(ids.begin(), ids.end());
  // In statements of at most 500 ids: one round trip per batch, under every engine's limit on
  // bound parameters.
  constexpr size_t kBatch = 500;
  for (size_t from = 0; from < ids.size(); from += kBatch) {
    const size_t n = std::min(kBatch, ids.size() - from);
    std::string sql = "UPDATE devices SET generation = generation + 1 WHERE id IN (";
    std::vector<store::Value> params;
    for (size_t i = 0; i < n; ++i) {
      absl::StrAppend(&sql, i == 0 ? "" : ", ", "$", i + 1);
      params.emplace_back(ids[from + i]);
    }
    sql += ")";
    RETURN_IF_ERROR(tx.Execute(sql, params).status());
  }
  return PublishDesiredChange(tx, ids);
}

absl::StatusOr<v1::ListDevicesResponse> DeviceRegistry::List(
    const v1::ListDevicesRequest& request) {
  ASSIGN_OR_RETURN(Selector selector, Selector::Parse(request.selector()));
  const int page = PageSize(request.page_size());
  // Selectors are matched here, not in SQL, so the table is read in batches: memory stays
  // bounded however large the fleet and however few devices match.
  constexpr int64_t kBatch = 1000;
  v1::ListDevicesResponse response;
  std::string after = request.page_token();
  while (true) {
    ASSIGN_OR_RETURN(Rows rows, options_.database->Query(
                                    absl::StrCat("SELECT ", kColumns,
                                                 " FROM devices WHERE id > $1 ORDER BY id LIMIT $2"),
                                    {after, kBatch}));
    for (const store::Row& row : rows) {
      ASSIGN_OR_RETURN(Attributes attributes, AttributesOf(row));
      if (!selector.Matches(attributes)) continue;
      if (response.devices_size() == page) {
        response.set_next_page_token(response.devices(page - 1).id());
        return response;
      }
      ASSIGN_OR_RETURN(*response.add_devices(), DeviceFromRow(row));
    }
    if (static_cast<int64_t>(rows.size()) < kBatch) return response;
    after = rows.back().Text("id");
  }
}

absl::StatusOr<std::vector<FleetMember>> DeviceRegistry::Members(store::Reader& db,
                                                                 const Selector& selector,
                                                                 MemberCache* cache) {
  constexpr int64_t kBatch = 1000;
  std::unique_lock<std::mutex> lock;
  absl::flat_hash_map<std::string, MemberCache::Entry> fresh;  // the cache after this read
  if (cache != nullptr) lock = std::unique_lock(cache->mu_);
  std::vector<FleetMember> members;
  std::string after;
  while (true) {
    // Not kColumns: the profile is large and a member does not need it.
    ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT id, labels, state, last_seen_ms, target, arch, "
                                         "ram_mb, storage_mb, cores, accel FROM devices WHERE "
                                         "id > $1 AND status = 'ACTIVE' ORDER BY id LIMIT $2",
                                         {after, kBatch}));
    for (const store::Row& row : rows) {
      const std::string id = row.Text("id");
      std::string text;
      const FleetMember* member = nullptr;
      FleetMember parsed;
      if (cache != nullptr) {
        text = absl::StrCat(row.Text("labels"), "\n", row.Text("target"), "\n",
                            row.Text("arch"), "\n", row.Text("ram_mb"), "\n",
                            row.Text("storage_mb"), "\n", row.Text("cores"), "\n",
                            row.Text("accel"), "\n", row.Text("state"));
        auto it = cache->entries_.find(id);
        if (it != cache->entries_.end() && it->second.text == text) {
          auto& kept = fresh[id] = std::move(it->second);
          kept.member.last_seen_ms = row.Int("last_seen_ms");
          member = &kept.member;
        }
      }
      if (member == nullptr) {
        parsed.id = id;
        parsed.target = row.Text("target");
        ASSIGN_OR_RETURN(parsed.attributes, AttributesOf(row));
        parsed.last_seen_ms = row.Int("last_seen_ms");
        RETURN_IF_ERROR(ParseProtoJson(row.Text("state"), &parsed.state, true));
        if (cache != nullptr) {
          member = &(fresh[id] = {std::move(text), std::move(parsed)}).member;
        } else {
          member = &parsed;
        }
      }
      if (!selector.Matches(member->attributes)) continue;
      if (cache != nullptr) {
        members.push_back(*member);
      } else {
        members.push_back(std::move(parsed));
      }
    }
    if (static_cast<int64_t>(rows.size()) < kBatch) break;
    after = rows.back().Text("id");
  }
  if (cache != nullptr) cache->entries_ = std::move(fresh);
  return members;
}

absl::StatusOr<v1::Device> DeviceRegistry::Get(absl::string_view device_id) {
  ASSIGN_OR_RETURN(Rows rows, options_.database->Query(
                                  absl::StrCat("SELECT ", kColumns, " FROM devices WHERE id = $1"),
                                  {std::string(device_id)}));
  if (rows.empty()) return NoSuchDevice(device_id);
  ASSIGN_OR_RETURN(v1::Device device, DeviceFromRow(rows[0]));
  v1::SyncResponse desired;
  RETURN_IF_ERROR(FillDesired(rows[0], &desired));
  device.mutable_desired_modules()->Swap(desired.mutable_desired_modules());
  return device;
}

absl::StatusOr<v1::Device> DeviceRegistry::Update(const v1::UpdateDeviceRequest& request) {
  RETURN_IF_ERROR(ValidateLabels(request.labels()));
  if (request.remove_labels_size() > 64)
    return absl::InvalidArgumentError("too many labels to remove (64)");
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(Rows rows,
                     tx.Query("SELECT labels FROM devices WHERE id = $1", {request.id()}));
    if (rows.empty()) return NoSuchDevice(request.id());
    v1::Device current;
    RETURN_IF_ERROR(ParseProtoJson(rows[0].Text("labels"), &current, true));
    auto& labels = *current.mutable_labels();
    for (const auto& [k, v] : request.labels()) labels[k] = v;
    for (const auto& k : request.remove_labels()) labels.erase(k);
    RETURN_IF_ERROR(ValidateLabels(labels));
    RETURN_IF_ERROR(
        tx.Execute("UPDATE devices SET labels = $2, generation = generation + 1 WHERE id = $1",
                   {request.id(), LabelsJson(labels)})
            .status());
    return PublishDesiredChange(tx, {request.id()});
  }));
  Notify(request.id());
  return Get(request.id());
}

absl::StatusOr<v1::Device> DeviceRegistry::Decommission(absl::string_view device_id) {
  RETURN_IF_ERROR(store::RunInTransaction(*options_.database, [&](Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(int64_t changed, tx.Execute("UPDATE devices SET status = 'DECOMMISSIONED', "
                                                 "generation = generation + 1 WHERE id = $1",
                                                 {std::string(device_id)}));
    if (changed == 0) return NoSuchDevice(device_id);
    return PublishDesiredChange(tx, {std::string(device_id)});
  }));
  Notify(device_id);
  return Get(device_id);
}

absl::StatusOr<std::vector<FleetCount>> DeviceRegistry::Counts() {
  const int64_t cutoff = absl::ToUnixMillis(options_.clock->Now() - options_.offline_after);
  ASSIGN_OR_RETURN(
      Rows rows,
      options_.database->Query(
          "SELECT status, target, CASE WHEN last_seen_ms > $1 THEN 1 ELSE 0 END AS online, "
          "COUNT(*) AS devices FROM devices GROUP BY 1, 2, 3",
          {cutoff}));
  std::vector<FleetCount> counts;
  for (const store::Row& row : rows) {
    counts.push_back(
        {row.Text("status"), row.Text("target"),
         row.Int("online") == 1 && row.Text("status") == "ACTIVE", row.Int("devices")});
  }
  return counts;
}

absl::StatusOr<std::map<std::string, int64_t>> DeviceRegistry::ActiveClasses(store::Reader& db) {
  ASSIGN_OR_RETURN(Rows rows, db.Query("SELECT target, COUNT(*) AS devices FROM devices WHERE "
                                       "status = 'ACTIVE' AND target <> '' GROUP BY target"));
  std::map<std::string, int64_t> classes;
  for (const store::Row& row : rows) classes[row.Text("target")] = row.Int("devices");
  return classes;
}

}  // namespace edgeloop::fleet
