#ifndef CFLOWS_FASTCGI_SHIM_H
#define CFLOWS_FASTCGI_SHIM_H
/* Only the re-entrant libfcgi API (fcgiapp.h); never fcgi_stdio.h, which redefines stdio. */
#include <fcgiapp.h>
#endif
