#include "agent/module_manager.h"

#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/failpoint.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/proto_json.h"
#include "common/status.h"
#include "google/protobuf/struct.pb.h"

namespace edgeloop::agent {
namespace {

// A ModuleRef without the manifest and signature, as reported to the server.
v1::ModuleRef Brief(const v1::ModuleRef& ref) {
  v1::ModuleRef brief = ref;
  brief.clear_manifest();
  brief.clear_monitoring();
  brief.clear_monitoring_signature();
  brief.clear_signature();
  return brief;
}

// Failures that another attempt cannot fix: the module itself is wrong for this device.
bool Permanent(const absl::Status& s) {
  return absl::IsPermissionDenied(s) || absl::IsFailedPrecondition(s) || absl::IsDataLoss(s) ||
         absl::IsInvalidArgument(s);
}

}  // namespace

absl::Status ModuleManager::Restore() {
  auto json = ReadFile(options_.state_dir + "/active.json");
  if (!json.ok()) return absl::OkStatus();  // nothing was active yet
  google::protobuf::Struct active;
  RETURN_IF_ERROR(ParseProtoJson(*json, &active, true));
  const auto& fields = active.fields();
  const std::string signing_key =
      fields.count("#signingKey") ? fields.at("#signingKey").string_value() : "";
  {
    std::lock_guard lock(mu_);
    signing_key_ = signing_key;
    if (fields.count("#generation"))
      generation_ = static_cast<int64_t>(fields.at("#generation").number_value());
  }
  absl::Status first;
  for (const auto& [model, slot] : fields) {
    if (model == "#signingKey" || model == "#generation") continue;
    if (model == "#rolledBack") {
      std::lock_guard lock(mu_);
      for (const auto& digest : slot.list_value().values()) {
        rolled_back_.insert(digest.string_value());
        refused_[digest.string_value()] = "rolled back on this device earlier";
      }
      continue;
    }
    const auto& f = slot.struct_value().fields();
    // Previous first, so that it ends up as the previous module again.
    for (const char* which : {"previous", "active"}) {
      if (!f.count(which) || f.at(which).string_value().empty()) continue;
      const std::string digest = f.at(which).string_value();
      absl::Status s = [&]() -> absl::Status {
        ASSIGN_OR_RETURN(v1::ModuleRef ref, store_.LoadRef(digest));
        absl::StatusOr<ModuleFile> file = VerifyModule(ref, store_.SoPath(digest), signing_key);
        if (absl::IsDataLoss(file.status())) {
          // The disk changed the bytes: gone, so the server's next word downloads it again.
          store_.Discard(ref);
          return absl::UnavailableError(
              absl::StrCat(file.status().message(), "; deleted, to be downloaded again"));
        }
        RETURN_IF_ERROR(file.status());
        ASSIGN_OR_RETURN(auto loaded,
                         ServingModel::Load(ref, *std::move(file), options_.device_target));
        host_.Activate(std::move(loaded));
        return absl::OkStatus();
      }();
      if (!s.ok()) {
        Log(LogLevel::kWarning, "could not restore a module",
            {{"model", model}, {"digest", digest}, {"error", s.ToString()}});
        // Reported with the first sync, e.g. a module for the CPU of the board this storage
        // was in before; a module the server sends in its place clears it.
        v1::ModuleRef ref;
        ref.set_model(model);
        ref.set_digest(digest);
        std::lock_guard lock(mu_);
        RecordFailure(ref, s);
        if (first.ok()) first = s;
      }
    }
  }
  return first;
}

int64_t ModuleManager::RecordedGeneration() const {
  std::lock_guard lock(mu_);
  return generation_;
}

absl::Status ModuleManager::Reconcile(const v1::SyncResponse& desired,
                                      const ModuleStore::Fetcher& fetch) {
  {
    // Recorded with the next swap, not now: a desired state is not worth an fsync'd write
    // before it changes what runs (the server sends it again after a restart).
    std::lock_guard lock(mu_);
    signing_key_ = desired.module_signing_key();
    generation_ = desired.desired_generation();
  }
  // Candidates no longer shadowed go first: one now to be served is loaded afresh, and its
  // shadow copy would be counted against the memory the new one needs.
  if (shadow_ != nullptr) {
    std::set<std::string> shadowed;
    for (const v1::ShadowModule& s : desired.shadow_modules()) shadowed.insert(s.module().model());
    for (const auto& c : shadow_->Candidates()) {
      if (!shadowed.count(c->ref().model())) shadow_->Clear(c->ref().model());
    }
  }
  absl::Status first;
  // A module is the same when its bytes and its version are: two versions whose compiles gave
  // the same bytes are still two versions to the server (a rollout waits for the device to
  // report the new one), and telemetry counts per version. Such a switch loads the bytes it
  // has again under the new manifest; nothing is fetched.
  auto same = [](const v1::ModuleRef& a, const v1::ModuleRef& b) {
    return a.digest() == b.digest() && a.version() == b.version();
  };
  for (const v1::ModuleRef& ref : desired.desired_modules()) {
    if (auto active = host_.Active(ref.model()); active && same(active->ref(), ref))
      continue;  // (not held past this line: a drain waits for every reference to go)
    {
      std::lock_guard lock(mu_);
      if (auto it = refused_.find(ref.digest()); it != refused_.end()) continue;
    }
    // Back to the module kept as previous (a remote rollback): instant, nothing to fetch.
    if (auto previous = host_.Previous(ref.model());
        previous && same(previous->ref(), ref) && host_.Rollback(ref.model()).ok()) {
      Log(LogLevel::kInfo, "switched back to the previous module",
          {{"model", ref.model()}, {"version", ref.version()}, {"digest", ref.digest()}});
      std::lock_guard lock(mu_);
      failures_.erase(ref.model());
      if (absl::Status saved = SaveActive(); !saved.ok() && first.ok()) first = saved;
      continue;
    }
    absl::Status s = Install(ref, desired.module_signing_key(), fetch);
    std::lock_guard lock(mu_);
    if (s.ok()) {
      failures_.erase(ref.model());
      continue;
    }
    Log(LogLevel::kWarning, "module not installed; the current one keeps serving",
        {{"model", ref.model()},
         {"version", ref.version()},
         {"digest", ref.digest()},
         {"error", s.ToString()}});
    RecordFailure(ref, s);
    if (first.ok()) first = s;
  }
  if (absl::Status s = ReconcileShadows(desired, fetch); !s.ok() && first.ok()) first = s;
  return first;
}

absl::Status ModuleManager::ReconcileShadows(const v1::SyncResponse& desired,
                                             const ModuleStore::Fetcher& fetch) {
  if (shadow_ == nullptr) return absl::OkStatus();
  std::set<std::string> wanted;
  absl::Status first;
  for (const v1::ShadowModule& want : desired.shadow_modules()) {
    const v1::ModuleRef& ref = want.module();
    wanted.insert(ref.model());
    bool have = false;
    for (const auto& c : shadow_->Candidates()) {
      have = have || (c->ref().model() == ref.model() && c->ref().digest() == ref.digest() &&
                      c->ref().version() == ref.version());
    }
    {
      std::lock_guard lock(mu_);
      if (have || refused_.count(ref.digest())) continue;
    }
    absl::Status s = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(ModuleFile file, Fetch(ref, desired.module_signing_key(), fetch));
      // A candidate is an extra: it never makes the served module drain.
      ASSIGN_OR_RETURN(bool fits, FitsBesideLoaded(ref));
      if (!fits) {
        return absl::ResourceExhaustedError(
            "no memory to load the candidate beside the served module; it is not shadowed");
      }
      ASSIGN_OR_RETURN(auto loaded, ServingModel::Load(ref, std::move(file), options_.device_target));
      shadow_->Set(std::move(loaded), {want.sample_ratio(), want.cpu_budget(), want.tolerance()});
      return absl::OkStatus();
    }();
    std::lock_guard lock(mu_);
    if (s.ok()) {
      shadow_failures_.erase(ref.model());
      Log(LogLevel::kInfo, "shadowing a candidate beside the served module",
          {{"model", ref.model()},
           {"version", ref.version()},
           {"sample_ratio", want.sample_ratio()},
           {"cpu_budget", want.cpu_budget()}});
      continue;
    }
    Log(LogLevel::kWarning, "candidate not shadowed",
        {{"model", ref.model()}, {"version", ref.version()}, {"error", s.ToString()}});
    v1::ModuleStatus& failure = shadow_failures_[ref.model()];
    *failure.mutable_module() = Brief(ref);
    failure.set_state("failed");
    failure.set_message(std::string(s.message()).substr(0, 1000));
    if (Permanent(s)) refused_[ref.digest()] = std::string(s.message());
    if (first.ok()) first = s;
  }
  {
    std::lock_guard lock(mu_);
    std::erase_if(shadow_failures_, [&](const auto& f) { return !wanted.count(f.first); });
  }
  return first;
}

absl::StatusOr<ModuleFile> ModuleManager::Fetch(const v1::ModuleRef& ref,
                                                const std::string& signing_key,
                                                const ModuleStore::Fetcher& fetch) {
  // The signed manifest is checked before a byte is fetched; the bytes, against the digest it
  // names, before loading. (`ref` does not change in between: checking its signature again
  // would prove nothing new.)
  if (signing_key.empty()) {
    return absl::UnavailableError("the server has not sent its module signing key yet");
  }
  RETURN_IF_ERROR(VerifyManifest(ref, signing_key));
  RETURN_IF_ERROR(store_.SaveRef(ref));
  RETURN_IF_ERROR(store_.Download(ref, fetch, options_.download));
  Failpoint("agent.downloaded");
  absl::StatusOr<ModuleFile> file = OpenVerifiedModule(ref, store_.SoPath(ref.digest()));
  if (absl::IsDataLoss(file.status())) {
    // A cached copy that went bad on disk (the download itself was checked): fetched again.
    Log(LogLevel::kWarning, "cached module is corrupt; downloading it again",
        {{"digest", ref.digest()}, {"error", file.status().ToString()}});
    store_.Discard(ref);
    RETURN_IF_ERROR(store_.Download(ref, fetch, options_.download));
    file = OpenVerifiedModule(ref, store_.SoPath(ref.digest()));
  }
  return file;
}

std::set<std::string> ModuleManager::Loaded() const {
  std::set<std::string> keep;
  for (const ModelHost::Loaded& m : host_.LoadedModels()) {
    keep.insert(m.active->ref().digest());
    if (m.previous) keep.insert(m.previous->ref().digest());
  }
  if (shadow_ != nullptr) {
    for (const auto& c : shadow_->Candidates()) keep.insert(c->ref().digest());
  }
  return keep;
}

absl::Status ModuleManager::Install(const v1::ModuleRef& ref, const std::string& signing_key,
                                    const ModuleStore::Fetcher& fetch) {
  absl::StatusOr<ModuleFile> file = Fetch(ref, signing_key, fetch);
  RETURN_IF_ERROR(file.status());
  Failpoint("agent.verified");
  const absl::Time verified = absl::Now();
  ASSIGN_OR_RETURN(bool fits, FitsBesideLoaded(ref));
  std::shared_ptr<ServingModel> old = host_.Active(ref.model());
  if (!fits && old) {
    // No room for old and new at once: calls wait while the old module drains and unloads.
    Log(LogLevel::kInfo, "draining the current module to make room",
        {{"model", ref.model()}, {"version", ref.version()}});
    const v1::ModuleRef old_ref = old->ref();
    old.reset();
    RETURN_IF_ERROR(host_.Drain(ref.model(), absl::Seconds(30)));
    auto loaded = ServingModel::Load(ref, *std::move(file), options_.device_target);
    if (!loaded.ok()) {
      // Put the old module back; the calls waiting go on as before.
      absl::StatusOr<std::shared_ptr<ServingModel>> back = absl::UnknownError("");
      if (auto old_file = OpenVerifiedModule(old_ref, store_.SoPath(old_ref.digest())); old_file.ok())
        back = ServingModel::Load(old_ref, *std::move(old_file), options_.device_target);
      if (back.ok()) {
        host_.Activate(*std::move(back));
      } else {
        host_.EndDrain(ref.model());
      }
      return loaded.status();
    }
    host_.Activate(*std::move(loaded));
  } else {
    old.reset();
    ASSIGN_OR_RETURN(auto loaded,
                     ServingModel::Load(ref, *std::move(file), options_.device_target));
    // Unloaded here, after the swap's locks are let go (unless a call still holds it).
    std::shared_ptr<ServingModel> released = host_.Activate(std::move(loaded));
  }
  Failpoint("agent.published");
  Log(LogLevel::kInfo, "serving new module",
      {{"model", ref.model()},
       {"version", ref.version()},
       {"digest", ref.digest()},
       // Load (dlopen, checks, self-test, warm-up) plus the swap: what the bench reports.
       {"verified_to_serving_us", absl::ToInt64Microseconds(absl::Now() - verified)}});
  {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(SaveActive());
  }
  Failpoint("agent.recorded");
  return store_.Prune(options_.cache_bytes, Loaded());
}

void ModuleManager::RecordFailure(const v1::ModuleRef& ref, const absl::Status& why) {
  v1::ModuleStatus& failure = failures_[ref.model()];
  *failure.mutable_module() = Brief(ref);
  failure.set_state("failed");
  failure.set_message(std::string(why.message()).substr(0, 1000));
  if (Permanent(why)) refused_[ref.digest()] = std::string(why.message());
}

void ModuleManager::OnLocalRollback(const v1::ModuleRef& refused, const std::string& why) {
  Log(LogLevel::kWarning, "rolled back to the previous module",
      {{"model", refused.model()}, {"version", refused.version()}, {"why", why}});
  std::lock_guard lock(mu_);
  refused_[refused.digest()] = why;
  rolled_back_.insert(refused.digest());
  v1::ModuleStatus& failure = failures_[refused.model()];
  *failure.mutable_module() = Brief(refused);
  failure.set_state("rolled back");
  failure.set_message(absl::StrCat("rolled back on the device: ", why));
  if (absl::Status saved = SaveActive(); !saved.ok()) {
    Log(LogLevel::kError, "cannot record the rollback", {{"error", saved.ToString()}});
  }
}

namespace {

int64_t MemAvailableBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  while (meminfo >> key >> kb) {
    if (key == "MemAvailable:") return kb * 1024;
    meminfo.ignore(64, '\n');
  }
  return INT64_MAX;
}

}  // namespace

int64_t ModuleManager::ModuleMemory(const v1::ModuleRef& ref) const {
  auto manifest = ParseManifest(ref.manifest());  // (checked before the module was fetched)
  return ref.size() + 2 * (manifest.ok() ? manifest->workspace_bytes : 0);
}

absl::StatusOr<bool> ModuleManager::FitsBesideLoaded(const v1::ModuleRef& ref) const {
  const int64_t need = ModuleMemory(ref);
  int64_t this_model = 0, loaded = 0;
  for (const ModelHost::Loaded& m : host_.LoadedModels()) {
    for (const ServingModel* module : {m.active.get(), m.previous.get()}) {
      if (module == nullptr) continue;
      loaded += ModuleMemory(module->ref());
      if (m.model == ref.model()) this_model += ModuleMemory(module->ref());
    }
  }
  if (shadow_ != nullptr) {
    for (const auto& c : shadow_->Candidates()) loaded += ModuleMemory(c->ref());
  }
  // Against a budget everything loaded counts; against what the kernel says is available,
  // the loaded modules are already in use and not counted again.
  const int64_t room = options_.memory_budget_bytes > 0 ? options_.memory_budget_bytes - loaded
                                                        : MemAvailableBytes() - (16 << 20);
  if (need <= room) return true;
  if (need <= room + this_model) return false;  // fits once this model's modules are gone
  return absl::FailedPreconditionError(
      absl::StrCat("module ", ref.digest(), " needs ", need, " bytes of memory; only ",
                   room + this_model, " can be made free"));
}

absl::Status ModuleManager::SaveActive() {
  // Printed here rather than through protobuf's JSON printer, which took ~130 µs of CPU per
  // swap on the device's core while calls were being served; Restore() parses it as JSON.
  auto quoted = [](absl::string_view s) { return absl::StrCat("\"", JsonEscape(s), "\""); };
  std::vector<std::string> fields = {
      absl::StrCat("  \"#signingKey\": ", quoted(signing_key_)),
      absl::StrCat("  \"#generation\": ", generation_),
      absl::StrCat("  \"#rolledBack\": [",
                   absl::StrJoin(rolled_back_, ", ",
                                 [&](std::string* out, const std::string& digest) {
                                   out->append(quoted(digest));
                                 }),
                   "]")};
  for (const ModelHost::Loaded& m : host_.LoadedModels()) {
    std::string slot =
        absl::StrCat("  ", quoted(m.model), ": {\"active\": ", quoted(m.active->ref().digest()));
    if (m.previous) absl::StrAppend(&slot, ", \"previous\": ", quoted(m.previous->ref().digest()));
    fields.push_back(slot + "}");
  }
  return WriteFileAtomically(options_.state_dir + "/active.json",
                             absl::StrCat("{\n", absl::StrJoin(fields, ",\n"), "\n}\n"));
}

void ModuleManager::Report(v1::DeviceState* state) const {
  std::lock_guard lock(mu_);
  for (const ModelHost::Loaded& m : host_.LoadedModels()) {
    v1::ModuleStatus* status = state->add_modules();
    *status->mutable_module() = Brief(m.active->ref());
    status->set_state("running");
    if (m.previous) {
      v1::ModuleStatus* kept = state->add_modules();
      *kept->mutable_module() = Brief(m.previous->ref());
      kept->set_state("previous");
    }
  }
  for (const auto& [model, failure] : failures_) *state->add_modules() = failure;
  if (shadow_ != nullptr) {
    for (const auto& c : shadow_->Candidates()) {
      v1::ModuleStatus* status = state->add_modules();
      *status->mutable_module() = Brief(c->ref());
      status->set_state("shadowing");
    }
  }
  for (const auto& [model, failure] : shadow_failures_) *state->add_modules() = failure;
}

}  // namespace edgeloop::agent
