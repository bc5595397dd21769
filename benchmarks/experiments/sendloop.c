/*
 * sendloop: the C twin of the bare loop in mb2.py (issue 14, item 3): one send()
 * per socket to 500 loopback TCP sockets, receivers drained outside the timing;
 * prints the median ns per send over 60 rounds.
 *   cc -O2 -o /tmp/sendloop benchmarks/experiments/sendloop.c && taskset -c 0 /tmp/sendloop
 *   (-DN=1000 for mb2.py's / mb_uring.py's 1000 sockets)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#ifndef N
#define N 500
#endif
static long long ns(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(){int ls=socket(AF_INET,SOCK_STREAM,0);struct sockaddr_in a={.sin_family=AF_INET};inet_pton(AF_INET,"127.0.0.1",&a.sin_addr);bind(ls,(void*)&a,sizeof a);listen(ls,1024);socklen_t l=sizeof a;getsockname(ls,(void*)&a,&l);
int cl[N],sv[N],one=1;for(int i=0;i<N;i++){cl[i]=socket(AF_INET,SOCK_STREAM,0);connect(cl[i],(void*)&a,sizeof a);sv[i]=accept(ls,0,0);setsockopt(sv[i],IPPROTO_TCP,TCP_NODELAY,&one,4);setsockopt(cl[i],IPPROTO_TCP,TCP_NODELAY,&one,4);fcntl(cl[i],F_SETFL,O_NONBLOCK);fcntl(sv[i],F_SETFL,O_NONBLOCK);}
char data[82];memset(data,'x',82);data[0]=0x81;data[1]=0x50;char buf[65536];double r[60];
for(int k=0;k<60;k++){for(int i=0;i<N;i++)while(recv(cl[i],buf,sizeof buf,0)>0);long long t0=ns();for(int i=0;i<N;i++)send(sv[i],data,82,MSG_NOSIGNAL|MSG_DONTWAIT);r[k]=(ns()-t0)/(double)N;}
qsort(r,60,sizeof(double),cmp);printf("C median ns/send %.0f\n",r[30]);}
