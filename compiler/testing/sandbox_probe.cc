// sandbox_probe: tries one thing a hostile compile would, for compiler/sandbox_test.cc.
// Exit 0 when it worked, 1 when the system refused it (the reason on stderr).
//   sandbox_probe read PATH | write PATH | env NAME | alloc GIB | connect PORT |
//                 fork N | survive FIFO | spin
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

int Refused(const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const std::string action = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  if (action == "read") {
    int fd = ::open(arg, O_RDONLY);
    if (fd < 0) return Refused("open");
    char c;
    return ::read(fd, &c, 1) >= 0 ? 0 : Refused("read");
  }
  if (action == "write") {
    int fd = ::open(arg, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return Refused("open");
    return ::write(fd, "x", 1) == 1 ? 0 : Refused("write");
  }
  if (action == "env") return std::getenv(arg) != nullptr ? 0 : 1;
  if (action == "alloc") {
    const size_t bytes = std::strtoull(arg, nullptr, 10) << 30;
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p != MAP_FAILED ? 0 : Refused("mmap");
  }
  if (action == "connect") {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return Refused("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::atoi(arg)));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 ? 0
                                                                               : Refused("connect");
  }
  if (action == "fork") {
    // Children that stay alive (paused) so each one counts against the process limit.
    const int wanted = std::atoi(arg);
    int started = 0;
    for (; started < wanted; ++started) {
      pid_t pid = ::fork();
      if (pid < 0) break;
      if (pid == 0) {
        ::pause();
        ::_exit(0);
      }
    }
    std::printf("started %d of %d\n", started, wanted);
    return started == wanted ? 0 : Refused("fork");
  }
  if (action == "survive") {
    // A grandchild in a session of its own holds the FIFO's write end open forever; the test
    // sees the FIFO hang up only when the sandbox has killed it.
    int ready[2];
    if (::pipe(ready) != 0) return Refused("pipe");
    pid_t pid = ::fork();
    if (pid < 0) return Refused("fork");
    if (pid == 0) {
      ::setsid();
      if (::fork() != 0) ::_exit(0);
      int fd = ::open(arg, O_WRONLY);
      (void)!::write(fd, "a", 1);
      (void)!::write(ready[1], "r", 1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c;
    return ::read(ready[0], &c, 1) == 1 ? 0 : Refused("the grandchild did not start");
  }
  if (action == "spin") {
    volatile unsigned long spins = 0;  // volatile: the loop must burn CPU, not be folded away
    for (;;) spins = spins + 1;
  }
  return 2;
}
