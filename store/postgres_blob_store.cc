#include "store/postgres_blob_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status.h"
#include "store/blob_staging_internal.h"

namespace edgeloop::store {
namespace {

constexpr int64_t kChunkBytes = 1 << 20;

class DatabaseBlobReader final : public BlobReader {
 public:
  DatabaseBlobReader(Database* db, std::string digest, int64_t size)
      : db_(db), digest_(std::move(digest)), size_(size) {}
  int64_t size() const override { return size_; }
  absl::Status ReadAt(int64_t offset, size_t max_bytes, std::string* out) override {
    out->clear();
    while (offset < size_ && out->size() < max_bytes) {
      int64_t seq = offset / kChunkBytes;
      if (seq != cached_seq_) {
        ASSIGN_OR_RETURN(Rows rows,
                         db_->Query("SELECT data FROM blob_chunks WHERE digest = $1 AND seq = $2",
                                    {digest_, seq}));
        if (rows.empty())
          return absl::DataLossError(absl::StrCat("blob ", digest_, " is missing chunk ", seq));
        cached_ = rows[0].Blob("data");
        cached_seq_ = seq;
      }
      int64_t within = offset - seq * kChunkBytes;
      size_t take =
          std::min<size_t>(max_bytes - out->size(), cached_.size() - static_cast<size_t>(within));
      if (take == 0) break;
      out->append(cached_, static_cast<size_t>(within), take);
      offset += static_cast<int64_t>(take);
    }
    return absl::OkStatus();
  }

 private:
  Database* db_;
  std::string digest_;
  int64_t size_;
  int64_t cached_seq_ = -1;
  std::string cached_;
};

class DatabaseBlobWriter final : public BlobWriter {
 public:
  DatabaseBlobWriter(Database* db, std::unique_ptr<StagingFile> file)
      : db_(db), file_(std::move(file)) {}
  absl::Status Write(absl::string_view bytes) override {
    if (!file_) return absl::FailedPreconditionError("upload already committed");
    return file_->Write(bytes);
  }
  int64_t bytes_written() const override { return file_ ? file_->size() : size_; }

  absl::StatusOr<BlobInfo> Commit(absl::string_view expected_digest) override {
    if (!file_) return absl::FailedPreconditionError("upload already committed");
    ASSIGN_OR_RETURN(std::string digest, file_->Finish());
    RETURN_IF_ERROR(StagingFile::CheckExpected(expected_digest, digest));
    int fd = ::open(file_->path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("reopen staged upload", errno);
    absl::Status status = RunInTransaction(*db_, [&](Transaction& tx) -> absl::Status {
      ASSIGN_OR_RETURN(Rows existing, tx.Query("SELECT 1 FROM blobs WHERE digest = $1", {digest}));
      if (!existing.empty()) return absl::OkStatus();
      std::string chunk(kChunkBytes, '\0');
      for (int64_t seq = 0, offset = 0; offset < file_->size() || seq == 0; ++seq) {
        ssize_t n = ::pread(fd, chunk.data(), kChunkBytes, offset);
        if (n < 0) return ErrnoStatus("read staged upload", errno);
        RETURN_IF_ERROR(
            tx.Execute("INSERT INTO blob_chunks (digest, seq, data) VALUES ($1, $2, $3)",
                       {digest, seq, Bytes{chunk.substr(0, static_cast<size_t>(n))}})
                .status());
        offset += n;
        if (n == 0) break;
      }
      return tx
          .Execute("INSERT INTO blobs (digest, size, created_at_ms) VALUES ($1, $2, $3)",
                   {digest, file_->size(), absl::ToUnixMillis(absl::Now())})
          .status();
    });
    ::close(fd);
    // Two replicas storing the same bytes at once: the loser's unique violation means the
    // blob is now there, which is what was asked for.
    if (status.code() == absl::StatusCode::kAlreadyExists) status = absl::OkStatus();
    RETURN_IF_ERROR(status);
    // The bytes now live in the database; the staged copy goes at once.
    size_ = file_->size();
    file_.reset();
    return BlobInfo{digest, size_};
  }

 private:
  Database* db_;
  std::unique_ptr<StagingFile> file_;
  int64_t size_ = 0;
};

class DatabaseBlobStore final : public BlobStore {
 public:
  DatabaseBlobStore(Database* db, std::unique_ptr<StagingArea> staging)
      : db_(db), staging_(std::move(staging)) {}

  absl::StatusOr<std::unique_ptr<BlobWriter>> NewWriter(int64_t max_bytes) override {
    ASSIGN_OR_RETURN(auto file, StagingFile::Create(*staging_, max_bytes));
    return std::unique_ptr<BlobWriter>(new DatabaseBlobWriter(db_, std::move(file)));
  }
  absl::StatusOr<std::unique_ptr<BlobReader>> Open(absl::string_view digest) override {
    ASSIGN_OR_RETURN(BlobInfo info, Stat(digest));
    return std::unique_ptr<BlobReader>(new DatabaseBlobReader(db_, info.digest, info.size));
  }
  absl::StatusOr<BlobInfo> Stat(absl::string_view digest) override {
    RETURN_IF_ERROR(CheckDigest("blob digest", digest));
    ASSIGN_OR_RETURN(Rows rows,
                     db_->Query("SELECT size FROM blobs WHERE digest = $1", {std::string(digest)}));
    if (rows.empty()) return absl::NotFoundError(absl::StrCat("blob ", digest, " not found"));
    return BlobInfo{std::string(digest), rows[0].Int("size")};
  }

 private:
  Database* db_;
  std::unique_ptr<StagingArea> staging_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> NewDatabaseBlobStore(Database* db,
                                                                const std::string& staging_dir) {
  ASSIGN_OR_RETURN(auto staging, StagingArea::Create(staging_dir));
  return std::unique_ptr<BlobStore>(new DatabaseBlobStore(db, std::move(staging)));
}

}  // namespace edgeloop::store
