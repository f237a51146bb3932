#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/random.h"
#include "common/status.h"
#include "store/blob_staging_internal.h"

namespace edgeloop::store {
namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<StagingArea>> StagingArea::Create(const std::string& root) {
  RETURN_IF_ERROR(MakeDirectories(root, 0700));
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    std::string lock_path = entry.path().string() + "/.lock";
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);  // a live process owns it
      continue;
    }
    fs::remove_all(entry.path(), ec);
    if (fd >= 0) ::close(fd);
  }
  std::string dir = absl::StrCat(root, "/", RandomHex(8));
  RETURN_IF_ERROR(MakeDirectories(dir, 0700));
  std::string lock_path = dir + "/.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", lock_path), errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus(absl::StrCat("lock ", lock_path), err);
  }
  return std::unique_ptr<StagingArea>(new StagingArea(dir, fd));
}

StagingArea::~StagingArea() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
  ::close(lock_fd_);
}

absl::StatusOr<std::unique_ptr<StagingFile>> StagingFile::Create(const StagingArea& area,
                                                                 int64_t max_bytes) {
  std::string path = absl::StrCat(area.dir(), "/upload-", RandomHex(8));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", path), errno);
  return std::unique_ptr<StagingFile>(new StagingFile(path, fd, max_bytes));
}

StagingFile::~StagingFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!released_) ::unlink(path_.c_str());
}

void StagingFile::Discard() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(path_.c_str());
  released_ = true;
}

absl::Status StagingFile::Write(absl::string_view bytes) {
  if (fd_ < 0) return absl::FailedPreconditionError("upload already finished or discarded");
  if (size_ + static_cast<int64_t>(bytes.size()) > max_bytes_) {
    Discard();
    return PayloadTooLargeError(absl::StrCat("upload exceeds the limit of ", max_bytes_, " bytes"));
  }
  hash_.Update(bytes);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      Discard();
      return ErrnoStatus("write staged upload", err);
    }
    done += static_cast<size_t>(n);
  }
  size_ += static_cast<int64_t>(bytes.size());
  return absl::OkStatus();
}

absl::StatusOr<std::string> StagingFile::Finish() {
  if (fd_ < 0) return absl::FailedPreconditionError("upload already finished or discarded");
  if (::fsync(fd_) != 0) {
    int err = errno;
    Discard();
    return ErrnoStatus("fsync staged upload", err);
  }
  ::close(fd_);
  fd_ = -1;
  return DigestFromHex(hash_.HexDigest());
}

absl::Status StagingFile::CheckExpected(absl::string_view expected, const std::string& actual) {
  if (expected.empty() || expected == actual) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("digest mismatch: the uploaded bytes hash to ", actual, ", not ", expected));
}

}  // namespace edgeloop::store
