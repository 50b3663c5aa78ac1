#ifndef CFLOWS_OPENSSL_SHIM_H
#define CFLOWS_OPENSSL_SHIM_H
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* Macros Swift cannot import. */
static inline EVP_PKEY *cflows_rsa_generate(unsigned int bits) { return EVP_RSA_gen(bits); }
static inline long cflows_bio_get_mem_data(BIO *bio, char **out) { return BIO_get_mem_data(bio, out); }
static inline void cflows_openssl_free(void *p) { OPENSSL_free(p); }
#endif
