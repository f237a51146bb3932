#include "agent/trust.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/x509.h"

namespace edgeloop::agent {
namespace {

absl::StatusOr<int> Connect(const std::string& server) {
  size_t colon = server.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("--server must be HOST:PORT");
  std::string host = server.substr(0, colon), port = server.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  struct addrinfo hints {};
  hints.ai_socktype = SOCK_STREAM;
  struct addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolve ", server, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  for (struct addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    struct timeval timeout {
      10, 0
    };
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to ", server));
  return fd;
}

}  // namespace

absl::StatusOr<std::string> FetchPinnedCa(const std::string& server, const std::string& pin) {
  ASSIGN_OR_RETURN(int fd, Connect(server));
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  // Nothing is trusted here on purpose: the only thing taken from this connection is a
  // certificate, and it is accepted only if its hash equals the pin the operator handed out.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  absl::StatusOr<std::string> result =
      absl::UnavailableError(absl::StrCat("TLS handshake with ", server, " failed"));
  if (SSL_connect(ssl) == 1) {
    result = absl::PermissionDeniedError(absl::StrCat(
        "the server at ", server,
        " does not present the CA whose pin is in the enrollment token; refusing to enroll"));
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
      BIO* bio = BIO_new(BIO_s_mem());
      PEM_write_bio_X509(bio, sk_X509_value(chain, i));
      char* data = nullptr;
      long n = BIO_get_mem_data(bio, &data);
      std::string pem(data, static_cast<size_t>(n));
      BIO_free(bio);
      auto candidate = crypto::CertificatePin(pem);
      if (candidate.ok() && *candidate == pin) {
        result = pem;
        break;
      }
    }
    SSL_shutdown(ssl);
  }
  ERR_clear_error();
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  return result;
}

}  // namespace edgeloop::agent
