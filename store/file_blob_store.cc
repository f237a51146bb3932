#include "store/file_blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status.h"
#include "store/blob_staging_internal.h"

namespace edgeloop::store {
namespace {

class FileBlobReader final : public BlobReader {
 public:
  FileBlobReader(int fd, int64_t size) : fd_(fd), size_(size) {}
  ~FileBlobReader() override { ::close(fd_); }
  int64_t size() const override { return size_; }
  absl::Status ReadAt(int64_t offset, size_t max_bytes, std::string* out) override {
    out->clear();
    if (offset < 0 || offset >= size_) return absl::OkStatus();
    size_t want =
        static_cast<size_t>(std::min<int64_t>(static_cast<int64_t>(max_bytes), size_ - offset));
    out->resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd_, out->data() + got, want - got, offset + static_cast<off_t>(got));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("read blob", errno);
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    out->resize(got);
    return absl::OkStatus();
  }

 private:
  int fd_;
  int64_t size_;
};

class FileBlobStore;

class FileBlobWriter final : public BlobWriter {
 public:
  FileBlobWriter(const FileBlobStore* store, std::unique_ptr<StagingFile> file)
      : store_(store), file_(std::move(file)) {}
  absl::Status Write(absl::string_view bytes) override { return file_->Write(bytes); }
  absl::StatusOr<BlobInfo> Commit(absl::string_view expected_digest) override;
  int64_t bytes_written() const override { return file_->size(); }

 private:
  const FileBlobStore* store_;
  std::unique_ptr<StagingFile> file_;
};

class FileBlobStore final : public BlobStore {
 public:
  FileBlobStore(std::string root, std::unique_ptr<StagingArea> staging)
      : root_(std::move(root)), staging_(std::move(staging)) {}

  absl::StatusOr<std::unique_ptr<BlobWriter>> NewWriter(int64_t max_bytes) override {
    ASSIGN_OR_RETURN(auto file, StagingFile::Create(*staging_, max_bytes));
    return std::unique_ptr<BlobWriter>(new FileBlobWriter(this, std::move(file)));
  }

  absl::StatusOr<std::unique_ptr<BlobReader>> Open(absl::string_view digest) override {
    RETURN_IF_ERROR(CheckDigest("blob digest", digest));
    std::string path = PathFor(digest);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("blob ", digest, " not found"));
      return ErrnoStatus(absl::StrCat("open blob ", digest), errno);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("stat blob", err);
    }
    return std::unique_ptr<BlobReader>(new FileBlobReader(fd, st.st_size));
  }

  absl::StatusOr<BlobInfo> Stat(absl::string_view digest) override {
    RETURN_IF_ERROR(CheckDigest("blob digest", digest));
    struct stat st;
    if (::stat(PathFor(digest).c_str(), &st) != 0) {
      if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("blob ", digest, " not found"));
      return ErrnoStatus("stat blob", errno);
    }
    return BlobInfo{std::string(digest), st.st_size};
  }

  std::string DirFor(absl::string_view digest) const {
    return absl::StrCat(root_, "/sha256/", digest.substr(kDigestPrefix.size(), 2));
  }
  std::string PathFor(absl::string_view digest) const {
    return absl::StrCat(DirFor(digest), "/", digest.substr(kDigestPrefix.size()));
  }

 private:
  std::string root_;
  std::unique_ptr<StagingArea> staging_;
};

absl::StatusOr<BlobInfo> FileBlobWriter::Commit(absl::string_view expected_digest) {
  ASSIGN_OR_RETURN(std::string digest, file_->Finish());
  RETURN_IF_ERROR(StagingFile::CheckExpected(expected_digest, digest));
  std::string dir = store_->DirFor(digest);
  RETURN_IF_ERROR(MakeDirectories(dir));
  std::string path = store_->PathFor(digest);
  // Same bytes, same name: an existing file already holds exactly these bytes.
  if (::access(path.c_str(), F_OK) != 0) {
    if (::rename(file_->path().c_str(), path.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("publish blob ", digest), errno);
    }
    file_->Release();
    RETURN_IF_ERROR(SyncDirectory(dir));
  }
  return BlobInfo{digest, file_->size()};
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> NewFileBlobStore(const std::string& root) {
  RETURN_IF_ERROR(MakeDirectories(root + "/sha256"));
  ASSIGN_OR_RETURN(auto staging, StagingArea::Create(root + "/staging"));
  return std::unique_ptr<BlobStore>(new FileBlobStore(root, std::move(staging)));
}

}  // namespace edgeloop::store
