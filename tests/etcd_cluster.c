/* etcd_cluster.c - the tests' etcd cluster from a shell (tests/etcd_suites.sh):
 *   etcd_cluster start DIR N     starts N members, prints the endpoints
 *   etcd_cluster stop DIR        kills every member recorded in DIR
 * Exit 0 on success, 1 with the reason on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdtest.h"

int main(int argc, char **argv)
{
    tu_etcd c;

    if (argc == 4 && strcmp(argv[1], "start") == 0) {
        if (tu_etcd_start(&c, argv[2], atoi(argv[3])) != 0) {
            fprintf(stderr, "etcd_cluster: %s\n", tu_etcd_error());
            return 1;
        }
        printf("%s\n", c.endpoints);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "stop") == 0) {
        if (tu_etcd_load(&c, argv[2]) != 0) {
            fprintf(stderr, "etcd_cluster: %s\n", tu_etcd_error());
            return 1;
        }
        tu_etcd_stop(&c);
        return 0;
    }
    fprintf(stderr, "usage: etcd_cluster start DIR N | stop DIR\n");
    return 1;
}
