#include "agent/module_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/proto_json.h"
#include "common/sha256.h"
#include "common/signing.h"
#include "common/status.h"
#include "google/protobuf/struct.pb.h"

namespace edgeloop::agent {
namespace fs = std::filesystem;
namespace {

std::string Hex(absl::string_view digest) {
  return std::string(digest.substr(std::min(digest.size(), kDigestPrefix.size())));
}

int64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(size);
}

}  // namespace

std::string ModuleStore::SoPath(absl::string_view digest) const {
  return absl::StrCat(dir_, "/", Hex(digest), ".so");
}

bool ModuleStore::Have(absl::string_view digest) const {
  std::error_code ec;
  return fs::exists(SoPath(digest), ec);
}

absl::Status ModuleStore::Download(const v1::ModuleRef& ref, const Fetcher& fetch,
                                   const Limits& limits) {
  RETURN_IF_ERROR(CheckDigest("module digest", ref.digest()));
  if (Have(ref.digest())) return absl::OkStatus();
  RETURN_IF_ERROR(MakeDirectories(dir_, 0700));
  const std::string partial = absl::StrCat(dir_, "/", Hex(ref.digest()), ".partial");
  int64_t have = FileSize(partial);
  if (have > ref.size()) {  // not this module's bytes: start over
    fs::remove(partial);
    have = 0;
  }
  if (have > 0) {
    Log(LogLevel::kInfo, "resuming module download",
        {{"digest", ref.digest()}, {"have", have}, {"size", ref.size()}});
  }
  struct statvfs disk;
  if (::statvfs(dir_.c_str(), &disk) == 0) {
    const int64_t free_bytes = static_cast<int64_t>(disk.f_bavail) * disk.f_frsize;
    if (free_bytes < ref.size() - have + limits.reserve_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "not enough disk for module ", ref.digest(), ": ", ref.size() - have, " bytes to fetch, ",
          free_bytes, " free, ", limits.reserve_bytes, " kept in reserve"));
    }
  }
  absl::Duration backoff = limits.first_backoff;
  absl::Status last;
  for (int attempt = 0; attempt < limits.attempts && have < ref.size(); ++attempt) {
    if (attempt > 0) {
      Log(LogLevel::kWarning, "module download interrupted, resuming",
          {{"digest", ref.digest()}, {"have", have}, {"error", last.ToString()}});
      clock_->SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(30));
    }
    FILE* out = std::fopen(partial.c_str(), "ab");
    if (out == nullptr) return ErrnoStatus(absl::StrCat("open ", partial), errno);
    const absl::Time started = clock_->Now();
    const int64_t started_at = have;
    last = fetch(ref.digest(), have, [&](int64_t offset, absl::string_view data) -> absl::Status {
      if (offset != have) {
        return absl::DataLossError(absl::StrCat("chunk at ", offset, ", expected ", have));
      }
      if (have + static_cast<int64_t>(data.size()) > ref.size()) {
        return absl::DataLossError("the server sent more bytes than the module has");
      }
      if (std::fwrite(data.data(), 1, data.size(), out) != data.size() || std::fflush(out) != 0) {
        return ErrnoStatus(absl::StrCat("write ", partial), errno);  // ENOSPC: UNAVAILABLE
      }
      have += static_cast<int64_t>(data.size());
      if (limits.max_kbps > 0) {
        // Sleep until the average since this attempt began is back under the cap.
        const absl::Duration due = absl::Seconds(static_cast<double>(have - started_at) * 8 /
                                                 (1000.0 * limits.max_kbps));
        const absl::Duration ahead = due - (clock_->Now() - started);
        if (ahead > absl::ZeroDuration()) clock_->SleepFor(ahead);
      }
      return absl::OkStatus();
    });
    if (::fsync(fileno(out)) != 0 && last.ok()) last = ErrnoStatus("fsync", errno);
    std::fclose(out);
    if (absl::IsDataLoss(last) || absl::IsResourceExhausted(last)) break;
  }
  if (have < ref.size()) {
    return absl::UnavailableError(absl::StrCat("module ", ref.digest(), " incomplete after ",
                                               limits.attempts, " attempts (", have, " of ",
                                               ref.size(), " bytes): ", last.ToString()));
  }
  ASSIGN_OR_RETURN(ModuleFile file, ModuleFile::Open(partial));
  ASSIGN_OR_RETURN(std::string digest, file.Digest());
  if (digest != ref.digest()) {
    fs::remove(partial);
    return absl::DataLossError(absl::StrCat("downloaded module hashes to ", digest,
                                            ", not ", ref.digest(), "; discarded"));
  }
  std::error_code ec;
  fs::rename(partial, SoPath(ref.digest()), ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", partial, ": ", ec.message()));
  if (module_bytes_ >= 0) module_bytes_ += ref.size();
  return absl::OkStatus();
}

void ModuleStore::Discard(const v1::ModuleRef& ref) {
  std::error_code ec;
  if (fs::remove(SoPath(ref.digest()), ec) && module_bytes_ >= 0) module_bytes_ = -1;  // recount
}

absl::Status ModuleStore::SaveRef(const v1::ModuleRef& ref) {
  // Swapping back to a cached module writes nothing (an fsync'd write is CPU and I/O).
  std::string serialized = ref.SerializeAsString();
  if (auto it = saved_refs_.find(ref.digest()); it != saved_refs_.end() && it->second == serialized)
    return absl::OkStatus();
  const std::string path = absl::StrCat(dir_, "/", Hex(ref.digest()), ".json");
  const std::string json = PrintProtoJson(ref, true);
  if (auto kept = ReadFile(path); !kept.ok() || *kept != json) {  // (kept from an earlier run)
    RETURN_IF_ERROR(MakeDirectories(dir_, 0700));
    RETURN_IF_ERROR(WriteFileAtomically(path, json));
  }
  saved_refs_[ref.digest()] = std::move(serialized);
  return absl::OkStatus();
}

absl::StatusOr<v1::ModuleRef> ModuleStore::LoadRef(absl::string_view digest) const {
  ASSIGN_OR_RETURN(std::string json, ReadFile(absl::StrCat(dir_, "/", Hex(digest), ".json")));
  v1::ModuleRef ref;
  RETURN_IF_ERROR(ParseProtoJson(json, &ref, true));
  return ref;
}

absl::Status ModuleStore::Prune(int64_t max_bytes, const std::set<std::string>& keep) {
  // Nothing to delete while the modules fit; only a download adds to them.
  if (module_bytes_ >= 0 && module_bytes_ <= max_bytes) return absl::OkStatus();
  struct Entry {
    fs::file_time_type time;
    std::string digest;
    int64_t size;
  };
  std::vector<Entry> modules;
  int64_t total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    if (entry.path().extension() != ".so") continue;
    const std::string digest = DigestFromHex(entry.path().stem().string());
    const int64_t size = FileSize(entry.path().string());
    total += size;
    if (!keep.count(digest)) modules.push_back({entry.last_write_time(ec), digest, size});
  }
  std::sort(modules.begin(), modules.end(),
            [](const Entry& a, const Entry& b) { return a.time < b.time; });
  for (const Entry& m : modules) {
    if (total <= max_bytes) break;
    fs::remove(SoPath(m.digest), ec);
    fs::remove(absl::StrCat(dir_, "/", Hex(m.digest), ".json"), ec);
    saved_refs_.erase(m.digest);
    total -= m.size;
  }
  module_bytes_ = total;
  return absl::OkStatus();
}

absl::StatusOr<ManifestFacts> ParseManifest(const std::string& manifest) {
  static std::mutex mu;
  static auto* parsed = new std::map<std::string, ManifestFacts>;  // by manifest text
  {
    std::lock_guard lock(mu);
    if (auto it = parsed->find(manifest); it != parsed->end()) return it->second;
  }
  google::protobuf::Struct json;
  RETURN_IF_ERROR(ParseProtoJson(manifest, &json));
  const auto& f = json.fields();
  auto text = [&](const char* key) {
    return f.count(key) ? f.at(key).string_value() : std::string();
  };
  auto number = [&](const char* key, int64_t otherwise) {
    return f.count(key) ? static_cast<int64_t>(f.at(key).number_value()) : otherwise;
  };
  ManifestFacts facts{text("soDigest"), number("soSize", -1), text("target"),
                      number("workspaceBytes", 0)};
  std::lock_guard lock(mu);
  if (parsed->size() >= 64) parsed->clear();  // modules come and go
  return (*parsed)[manifest] = std::move(facts);
}

absl::Status VerifyManifest(const v1::ModuleRef& ref, const std::string& signing_key_pem) {
  if (signing_key_pem.empty()) {
    return absl::FailedPreconditionError("no module signing key from the server yet");
  }
  if (!crypto::VerifySignature(signing_key_pem, ref.manifest(), ref.signature())) {
    return absl::PermissionDeniedError(
        absl::StrCat("module ", ref.digest(), ": the manifest's signature does not verify"));
  }
  ASSIGN_OR_RETURN(const ManifestFacts manifest, ParseManifest(ref.manifest()));
  if (manifest.so_digest != ref.digest() || manifest.so_size != ref.size() ||
      manifest.target != ref.target()) {
    return absl::PermissionDeniedError(
        absl::StrCat("module ", ref.digest(), ": the signed manifest names another module (",
                     manifest.so_digest, ", ", manifest.so_size, " bytes, ", manifest.target, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModuleFile> OpenVerifiedModule(const v1::ModuleRef& ref, const std::string& so_path) {
  ASSIGN_OR_RETURN(ModuleFile file, ModuleFile::Open(so_path));
  ASSIGN_OR_RETURN(std::string digest, file.Digest());
  if (digest != ref.digest()) {
    return absl::DataLossError(
        absl::StrCat("module file ", so_path, " hashes to ", digest, ", not ", ref.digest()));
  }
  return file;
}

absl::StatusOr<ModuleFile> VerifyModule(const v1::ModuleRef& ref, const std::string& so_path,
                                        const std::string& signing_key_pem) {
  RETURN_IF_ERROR(VerifyManifest(ref, signing_key_pem));
  return OpenVerifiedModule(ref, so_path);
}

}  // namespace edgeloop::agent
