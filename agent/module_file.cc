#include "agent/module_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"

namespace edgeloop::agent {

absl::StatusOr<ModuleFile> ModuleFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
  return ModuleFile(fd, path);
}

ModuleFile& ModuleFile::operator=(ModuleFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

ModuleFile::~ModuleFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string ModuleFile::ProcPath() const { return absl::StrCat("/proc/self/fd/", fd_); }

absl::StatusOr<std::string> ModuleFile::Digest() const {
  Sha256 hash;
  std::vector<char> buffer(1 << 16);
  off_t offset = 0;
  for (;;) {
    const ssize_t n = ::pread(fd_, buffer.data(), buffer.size(), offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("read ", path_), errno);
    if (n == 0) break;
    hash.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    offset += n;
  }
  return DigestFromHex(hash.HexDigest());
}

}  // namespace edgeloop::agent
