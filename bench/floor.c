/*
 * The floor of this stack, measured in the same run as flows-fcgi: a C libfcgi responder that does per request
 * only what no Flows endpoint can skip: read the body to end of stream, one RSA-2048 OAEP-SHA256 decryption,
 * write a short answer. Behind the same nginx with the same load, its throughput is the limit.
 *
 *   cc -O2 -o floor floor.c -lfcgi -lcrypto
 *   spawn-fcgi -s SOCKET -F 2 -- ./floor private.pem PASSPHRASE_FILE
 */
#include <fcgiapp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <string.h>

static int oaep(EVP_PKEY_CTX *ctx) {
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()) > 0 && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) > 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: floor PRIVATE_KEY.pem PASSPHRASE_FILE\n");
        return 2;
    }
    char pass[256] = "";
    FILE *pf = fopen(argv[2], "r");
    if (pf) {
        if (fgets(pass, sizeof pass, pf)) pass[strcspn(pass, "\r\n")] = 0;
        fclose(pf);
    }
    FILE *kf = fopen(argv[1], "r");
    if (!kf) { perror(argv[1]); return 1; }
    EVP_PKEY *key = PEM_read_PrivateKey(kf, NULL, NULL, pass);
    fclose(kf);
    if (!key) { fprintf(stderr, "floor: cannot load %s\n", argv[1]); return 1; }

    /* One fixed wrapped key, made once: the per-request work is the private-key operation. */
    unsigned char aes[16] = {0}, wrapped[1024], clear[1024];
    size_t wrappedLength = sizeof wrapped;
    EVP_PKEY_CTX *enc = EVP_PKEY_CTX_new(key, NULL);
    if (EVP_PKEY_encrypt_init(enc) <= 0 || !oaep(enc) || EVP_PKEY_encrypt(enc, wrapped, &wrappedLength, aes, 16) <= 0) {
        fprintf(stderr, "floor: encryption failed\n");
        return 1;
    }
    EVP_PKEY_CTX_free(enc);

    FCGX_Init();
    FCGX_Request request;
    FCGX_InitRequest(&request, 0, 0);
    static char body[65536];
    while (FCGX_Accept_r(&request) >= 0) {
        while (FCGX_GetStr(body, sizeof body, request.in) > 0) {}
        EVP_PKEY_CTX *dec = EVP_PKEY_CTX_new(key, NULL);
        size_t clearLength = sizeof clear;
        int ok = EVP_PKEY_decrypt_init(dec) > 0 && oaep(dec) &&
                 EVP_PKEY_decrypt(dec, clear, &clearLength, wrapped, wrappedLength) > 0 && clearLength == 16;
        EVP_PKEY_CTX_free(dec);
        if (ok) FCGX_PutS("Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok", request.out);
        else FCGX_PutS("Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n", request.out);
        FCGX_Finish_r(&request);
    }
    return 0;
}
