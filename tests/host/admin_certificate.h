// Test helpers for administrator public keys: a self-signed X.509
// certificate of an administrator's key, and a PEM public key of another
// curve, built with OpenSSL as a CA or `openssl req -x509` would.
#ifndef HSMSIM_TESTS_HOST_ADMIN_CERTIFICATE_H_
#define HSMSIM_TESTS_HOST_ADMIN_CERTIFICATE_H_

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string>

#include "crypto/openssl_ptr.h"
#include "host/admin_key_file.h"

namespace hsmsim::host {

// SelfSignedCertificatePem returns a PEM certificate of `key` (which holds
// its private key) with subject CN `common_name`, signed by itself.
inline std::string SelfSignedCertificatePem(const AdminKey& key, const std::string& common_name) {
  std::unique_ptr<X509, crypto::OpenSslDeleter<X509_free>> cert(X509_new());
  EXPECT_NE(cert, nullptr);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), key.key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), name);
  EXPECT_GT(X509_sign(cert.get(), key.key.get(), EVP_sha512()), 0);
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_X509(bio.get(), cert.get()), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// P256PublicKeyPem returns a PEM public key of a new EC P-256 key: an EC
// key, but not an administrator's (P-521).
inline std::string P256PublicKeyPem() {
  crypto::EvpPkeyPtr key(EVP_EC_gen("P-256"));
  EXPECT_NE(key, nullptr);
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio.get(), key.get()), 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

}  // namespace hsmsim::host

#endif  // HSMSIM_TESTS_HOST_ADMIN_CERTIFICATE_H_
