/*
 * iscsiio: a minimal libiscsi initiator for hastor's integration tests. It
 * logs in to the target in URL, runs one command and logs out.
 *
 *   iscsiio tur   URL                       TEST UNIT READY
 *   iscsiio write URL LBA BLOCKSIZE         WRITE(16) of standard input
 *   iscsiio read  URL LBA NBYTES BLOCKSIZE  READ(16) to standard output
 *
 * A command that ends in CHECK CONDITION prints
 * "CHECK CONDITION key=K asc=AA ascq=QQ" on standard error and exits 3;
 * other failures exit 1 (2 for usage errors).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define INITIATOR "iqn.2026-11.dev.hastor:iscsiio"
#define MAXDATA (64u << 20)

static int finish(struct iscsi_context *iscsi, struct scsi_task *task, const char *what)
{
	if (task == NULL) {
		fprintf(stderr, "%s: %s\n", what, iscsi_get_error(iscsi));
		return 1;
	}
	if (task->status == SCSI_STATUS_CHECK_CONDITION) {
		fprintf(stderr, "CHECK CONDITION key=%d asc=%02x ascq=%02x\n",
			task->sense.key, (task->sense.ascq >> 8) & 0xff, task->sense.ascq & 0xff);
		return 3;
	}
	if (task->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "%s: status %d\n", what, task->status);
		return 1;
	}
	return 0;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: iscsiio tur|write|read URL ...\n");
		return 2;
	}
	const char *cmd = argv[1];
	struct iscsi_context *iscsi = iscsi_create_context(INITIATOR);
	if (iscsi == NULL) {
		fprintf(stderr, "cannot create iSCSI context\n");
		return 1;
	}
	struct iscsi_url *url = iscsi_parse_full_url(iscsi, argv[2]);
	if (url == NULL) {
		fprintf(stderr, "bad URL: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	iscsi_set_targetname(iscsi, url->target);
	/*
	 * Not iscsi_full_connect_sync: it fails the login when TEST UNIT
	 * READY reports NOT READY, which is what the tests look for.
	 */
	if (iscsi_connect_sync(iscsi, url->portal) != 0 || iscsi_login_sync(iscsi) != 0) {
		fprintf(stderr, "login: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	/* Consume the unit attentions of a new I_T nexus (power on, ...). */
	struct scsi_task *task = NULL;
	for (int i = 0; i < 10; i++) {
		task = iscsi_testunitready_sync(iscsi, url->lun);
		if (task == NULL || task->status != SCSI_STATUS_CHECK_CONDITION ||
		    task->sense.key != SCSI_SENSE_UNIT_ATTENTION)
			break;
		scsi_free_scsi_task(task);
		task = NULL;
	}
	int rc = 2;
	if (strcmp(cmd, "tur") == 0 && argc == 3) {
		rc = finish(iscsi, task, "TEST UNIT READY");
	} else if (strcmp(cmd, "write") == 0 && argc == 5) {
		if (task != NULL)
			scsi_free_scsi_task(task);
		task = NULL;
		uint64_t lba = strtoull(argv[3], NULL, 0);
		int bs = atoi(argv[4]);
		unsigned char *buf = malloc(MAXDATA);
		size_t n = 0;
		ssize_t r;
		while (buf && n < MAXDATA && (r = read(0, buf + n, MAXDATA - n)) > 0)
			n += (size_t)r;
		if (buf == NULL || bs <= 0 || n == 0 || n % (size_t)bs != 0) {
			fprintf(stderr, "write: need a whole number of %d-byte blocks on standard input, got %zu bytes\n", bs, n);
			rc = 2;
		} else {
			task = iscsi_write16_sync(iscsi, url->lun, lba, buf, (uint32_t)n, bs, 0, 0, 0, 0, 0);
			rc = finish(iscsi, task, "WRITE(16)");
		}
		free(buf);
	} else if (strcmp(cmd, "read") == 0 && argc == 6) {
		if (task != NULL)
			scsi_free_scsi_task(task);
		task = NULL;
		uint64_t lba = strtoull(argv[3], NULL, 0);
		uint32_t n = (uint32_t)strtoul(argv[4], NULL, 0);
		int bs = atoi(argv[5]);
		task = iscsi_read16_sync(iscsi, url->lun, lba, n, bs, 0, 0, 0, 0, 0);
		rc = finish(iscsi, task, "READ(16)");
		if (rc == 0 && write_all(1, task->datain.data, (size_t)task->datain.size) != 0) {
			perror("write to standard output");
			rc = 1;
		}
	} else {
		fprintf(stderr, "usage: iscsiio tur|write|read URL ...\n");
	}
	if (task != NULL)
		scsi_free_scsi_task(task);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_url(url);
	iscsi_destroy_context(iscsi);
	return rc;
}
