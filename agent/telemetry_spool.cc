#include "agent/telemetry_spool.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "common/telemetry_window.h"

namespace edgeloop::agent {
namespace fs = std::filesystem;
namespace {

// As many raw samples per feature as the spec asks per window: at most what the larger part
// carries.
int SampleCap(const v1::TelemetryWindow& a, const v1::TelemetryWindow& b) {
  int cap = 0;
  for (const auto* w : {&a, &b}) {
    for (const v1::TelemetryWindow::Feature& f : w->features())
      cap = std::max(cap, f.samples_size());
  }
  return cap;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TelemetrySpool>> TelemetrySpool::Open(const std::string& dir,
                                                                     int64_t cap_bytes) {
  RETURN_IF_ERROR(MakeDirectories(dir, 0700));
  std::unique_ptr<TelemetrySpool> spool(new TelemetrySpool(dir, cap_bytes));
  if (auto dropped = ReadFile(dir + "/dropped"); dropped.ok()) {
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*dropped), &spool->dropped_)) {
      spool->dropped_ = 0;
    }
  }
  std::error_code error;
  int64_t unreadable = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, error)) {
    const std::string name = e.path().filename().string();
    uint64_t sequence = 0;
    absl::string_view stem = name;
    if (!absl::ConsumeSuffix(&stem, ".window") || !absl::SimpleAtoi(stem, &sequence)) {
      if (absl::StrContains(name, ".tmp-")) fs::remove(e.path(), error);  // a write cut short
      continue;
    }
    absl::StatusOr<std::string> bytes = ReadFile(e.path().string());
    v1::TelemetryWindow window;
    if (!bytes.ok() || !window.ParseFromString(*bytes) || window.id().empty()) {
      Log(LogLevel::kWarning, "dropped an unreadable telemetry window", {{"file", name}});
      fs::remove(e.path(), error);
      ++unreadable;
      continue;
    }
    spool->files_[sequence] = {e.path().string(), window.id(), static_cast<int64_t>(bytes->size())};
    spool->bytes_ += static_cast<int64_t>(bytes->size());
    spool->next_ = std::max(spool->next_, sequence + 1);
  }
  if (error) return ErrnoStatus(absl::StrCat("list ", dir), error.value());
  if (unreadable > 0) {
    std::lock_guard lock(spool->mu_);
    spool->dropped_ += unreadable;
    RETURN_IF_ERROR(spool->SaveDropped());
  }
  return spool;
}

absl::Status TelemetrySpool::SaveDropped() {
  return WriteFileAtomically(dir_ + "/dropped", absl::StrCat(dropped_, "\n"), 0600);
}

void TelemetrySpool::DropOldest() {
  auto oldest = files_.begin();
  std::error_code ignored;
  fs::remove(oldest->second.path, ignored);
  bytes_ -= oldest->second.bytes;
  files_.erase(oldest);
  ++dropped_;
}

absl::Status TelemetrySpool::Append(const v1::TelemetryWindow& closed) {
  std::lock_guard lock(mu_);
  v1::TelemetryWindow window = closed;
  // The same window again: the agent restarted inside it. Both parts go as one window.
  for (auto it = files_.begin(); it != files_.end(); ++it) {
    if (it->second.window_id != window.id()) continue;
    absl::StatusOr<std::string> read = ReadFile(it->second.path);
    v1::TelemetryWindow before;
    if (read.ok() && before.ParseFromString(*read)) {
      MergeWindow(before, window, SampleCap(before, window));
      window = std::move(before);
    }
    std::error_code ignored;
    fs::remove(it->second.path, ignored);
    bytes_ -= it->second.bytes;
    files_.erase(it);
    break;
  }
  const std::string bytes = window.SerializeAsString();
  const int64_t size = static_cast<int64_t>(bytes.size());
  if (size > cap_) {
    ++dropped_;
    return SaveDropped();
  }
  const bool dropping = bytes_ + size > cap_;
  while (bytes_ + size > cap_ && !files_.empty()) DropOldest();
  if (dropping) RETURN_IF_ERROR(SaveDropped());
  const uint64_t sequence = next_++;
  const std::string path = absl::StrFormat("%s/%020d.window", dir_, sequence);
  RETURN_IF_ERROR(WriteFileAtomically(path, bytes, 0600));
  files_[sequence] = {path, window.id(), size};
  bytes_ += size;
  return absl::OkStatus();
}

std::vector<v1::TelemetryWindow> TelemetrySpool::Batch(int max_windows, int64_t max_bytes) const {
  std::lock_guard lock(mu_);
  std::vector<v1::TelemetryWindow> batch;
  int64_t bytes = 0;
  for (const auto& [sequence, file] : files_) {
    if (static_cast<int>(batch.size()) >= max_windows) break;
    if (!batch.empty() && bytes + file.bytes > max_bytes) break;
    absl::StatusOr<std::string> read = ReadFile(file.path);
    v1::TelemetryWindow window;
    if (!read.ok() || !window.ParseFromString(*read)) continue;  // dropped when next opened
    bytes += file.bytes;
    batch.push_back(std::move(window));
  }
  return batch;
}

int64_t TelemetrySpool::Remove(const std::vector<std::string>& ids) {
  const std::set<std::string> remove(ids.begin(), ids.end());
  std::error_code ignored;
  int64_t removed = 0;
  for (auto it = files_.begin(); it != files_.end();) {
    if (!remove.count(it->second.window_id)) {
      ++it;
      continue;
    }
    fs::remove(it->second.path, ignored);
    bytes_ -= it->second.bytes;
    it = files_.erase(it);
    ++removed;
  }
  return removed;
}

absl::Status TelemetrySpool::Discard(const std::vector<std::string>& ids) {
  std::lock_guard lock(mu_);
  const int64_t removed = Remove(ids);
  if (removed == 0) return absl::OkStatus();
  dropped_ += removed;
  return SaveDropped();
}

absl::Status TelemetrySpool::Acknowledge(const std::vector<std::string>& ids, int64_t dropped) {
  std::lock_guard lock(mu_);
  Remove(ids);
  if (dropped > 0) {
    dropped_ = std::max<int64_t>(0, dropped_ - dropped);
    RETURN_IF_ERROR(SaveDropped());
  }
  return absl::OkStatus();
}

int64_t TelemetrySpool::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

int64_t TelemetrySpool::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

size_t TelemetrySpool::windows() const {
  std::lock_guard lock(mu_);
  return files_.size();
}

}  // namespace edgeloop::agent
