/* Berkeley DB 5.3 (Debian libdb5.3-dev) for Swift. */
#include <db.h>
