/* SPDX-License-Identifier: MIT */
/* modeldir.c - see modeldir.h. */
#include "model/modeldir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *read_json(const char *dir, const char *name, int required, char *err)
{
	char *path = mh_path_join(dir, name);
	if (!path) {
		mh_errf(err, "%s: out of memory", dir);
		return NULL;
	}
	if (!required && !mh_is_file(path)) {
		free(path);
		return NULL;
	}
	size_t len;
	char *text = mh_read_file_max(path, MH_READ_CONFIG_MAX, &len, err);
	cJSON *j = NULL;
	if (text) {
		j = cJSON_ParseWithLength(text, len);
		if (!cJSON_IsObject(j)) {
			const char *at = cJSON_GetErrorPtr();
			if (j || !at || at < text || at > text + len)
				mh_errf(err, "%s: not a JSON object", path);
			else
				mh_errf(err, "%s: malformed JSON at byte %td", path, at - text);
			cJSON_Delete(j);
			j = NULL;
		}
	}
	free(text);
	free(path);
	return j;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Shard file names come from a file we do not trust: plain names only. */
static int safe_name(const char *s)
{
	return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int open_shards(mh_dir *d, char *err)
{
	char *idx_path = mh_path_join(d->path, "model.safetensors.index.json");
	int sharded = idx_path && mh_is_file(idx_path);
	free(idx_path);
	if (!sharded) {
		char *p = mh_path_join(d->path, "model.safetensors");
		if (!p || !mh_is_file(p)) {
			mh_errf(err, "%s: no model.safetensors or model.safetensors.index.json", d->path);
			free(p);
			return -1;
		}
		d->shards = calloc(1, sizeof *d->shards);
		int rc = d->shards ? st_open_flags(&d->shards[0], p, ST_DEFER_SCALES, err) : -1;
		free(p);
		if (rc == 0)
			d->n_shards = 1;
		return rc;
	}
	cJSON *idx = read_json(d->path, "model.safetensors.index.json", 1, err);
	if (!idx)
		return -1;
	int rc = -1;
	const cJSON *map = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
	const char **files = NULL;
	int nfiles = 0;
	if (!cJSON_IsObject(map)) {
		mh_errf(err, "%s/model.safetensors.index.json: no \"weight_map\" object", d->path);
		goto out;
	}
	int nmap = cJSON_GetArraySize(map);
	files = calloc(nmap ? nmap : 1, sizeof *files);
	if (!files)
		goto oom;
	const cJSON *e;
	cJSON_ArrayForEach(e, map) {
		if (!cJSON_IsString(e) || !safe_name(e->valuestring)) {
			mh_errf(err, "%s/model.safetensors.index.json: tensor '%s' maps to an invalid file name",
				d->path, e->string ? e->string : "?");
			goto out;
		}
		files[nfiles++] = e->valuestring;
	}
	/* sorted and de-duplicated: n log n, where a scan per entry took
	 * 28 s for an index naming 100k shards */
	qsort(files, nfiles, sizeof *files, cmp_str);
	int nuniq = 0;
	for (int i = 0; i < nfiles; i++)
		if (!nuniq || strcmp(files[nuniq - 1], files[i]) != 0)
			files[nuniq++] = files[i];
	nfiles = nuniq;
	d->shards = calloc(nfiles ? nfiles : 1, sizeof *d->shards);
	if (!d->shards)
		goto oom;
	for (int i = 0; i < nfiles; i++) {
		char *p = mh_path_join(d->path, files[i]);
		if (!p)
			goto oom;
		int r = st_open_flags(&d->shards[i], p, ST_DEFER_SCALES, err);
		free(p);
		if (r != 0)
			goto out;
		d->n_shards++;
	}
	cJSON_ArrayForEach(e, map) {
		const char **f = bsearch(&e->valuestring, files, nfiles, sizeof *files, cmp_str);
		if (!f || !st_find(&d->shards[f - files], e->string)) {
			mh_errf(err, "%s/%s: tensor '%s' named in model.safetensors.index.json is missing",
				d->path, e->valuestring, e->string);
			goto out;
		}
	}
	rc = 0;
	goto out;
oom:
	mh_errf(err, "%s: out of memory", d->path);
out:
	free(files);
	cJSON_Delete(idx);
	return rc;
}

typedef struct {
	const mh_tensor *t;
	int shard;
} tensor_at;

static int cmp_tensor_at(const void *a, const void *b)
{
	return strcmp(((const tensor_at *)a)->t->name, ((const tensor_at *)b)->t->name);
}

/* Every tensor of every shard sorted by name, with the shard it is in. */
static int build_index(mh_dir *d, char *err)
{
	int n = 0;
	for (int i = 0; i < d->n_shards; i++)
		n += d->shards[i].n;
	tensor_at *all = calloc(n ? n : 1, sizeof *all);
	d->index = calloc(n ? n : 1, sizeof *d->index);
	d->index_shard = calloc(n ? n : 1, sizeof *d->index_shard);
	if (!all || !d->index || !d->index_shard) {
		free(all);
		mh_errf(err, "%s: out of memory", d->path);
		return -1;
	}
	int k = 0;
	for (int i = 0; i < d->n_shards; i++)
		for (int j = 0; j < d->shards[i].n; j++)
			all[k++] = (tensor_at){ &d->shards[i].tensors[j], i };
	qsort(all, n, sizeof *all, cmp_tensor_at);
	for (k = 0; k < n; k++) {
		if (k && strcmp(all[k].t->name, all[k - 1].t->name) == 0) {
			mh_errf(err, "%s: tensor '%s' appears in two shards", d->path, all[k].t->name);
			free(all);
			return -1;
		}
		d->index[k] = all[k].t;
		d->index_shard[k] = all[k].shard;
	}
	d->n_tensors = n;
	free(all);
	return 0;
}

mh_dir *modeldir_open(const char *path, char *err)
{
	if (!mh_is_dir(path)) {
		mh_errf(err, "%s: %s", path, mh_is_file(path) ? "not a directory" : strerror(ENOENT));
		return NULL;
	}
	mh_dir *d = calloc(1, sizeof *d);
	if (!d || !(d->path = strdup(path))) {
		free(d);
		mh_errf(err, "%s: out of memory", path);
		return NULL;
	}
	size_t pl = strlen(d->path);
	while (pl > 1 && d->path[pl - 1] == '/')
		d->path[--pl] = 0;
	err[0] = 0;
	d->config = read_json(d->path, "config.json", 1, err);
	if (!d->config)
		goto fail;
	d->generation = read_json(d->path, "generation_config.json", 0, err);
	if (!d->generation && err[0])
		goto fail;
	if (open_shards(d, err) != 0 || build_index(d, err) != 0)
		goto fail;
	return d;
fail:
	modeldir_close(d);
	return NULL;
}

void modeldir_populate(mh_dir *d)
{
	if (!d->replaced) {
		for (int i = 0; i < d->n_shards; i++)
			st_populate(&d->shards[i]);
		return;
	}
	for (int i = 0; i < d->n_tensors; i++)
		if (!d->replaced[i])
			st_populate_range(&d->shards[d->index_shard[i]], d->index[i]->data,
					  d->index[i]->nbytes);
}

void modeldir_drop(mh_dir *d, int i)
{
	if (!d->replaced)
		d->replaced = calloc(d->n_tensors ? d->n_tensors : 1, 1);
	if (!d->replaced)
		return;
	d->replaced[i] = 1;
	st_drop_range(&d->shards[d->index_shard[i]], d->index[i]->data, d->index[i]->nbytes);
}

void modeldir_drop_part(mh_dir *d, int i, const void *p, size_t n)
{
	st_drop_range(&d->shards[d->index_shard[i]], p, n);
}

const mh_tensor *modeldir_conv(const mh_dir *d, int src, int transposed)
{
	for (int k = 0; k < d->n_conv; k++)
		if (d->conv[k].src == src && d->conv[k].transposed == transposed)
			return d->conv[k].t;
	return NULL;
}

int modeldir_add_conv(mh_dir *d, mh_tensor *c, int src, int transposed)
{
	mh_conv *nc = realloc(d->conv, (d->n_conv + 1) * sizeof *nc);
	if (!nc)
		return -1;
	d->conv = nc;
	d->conv[d->n_conv++] = (mh_conv){ c, src, transposed };
	modeldir_drop(d, src);
	return 0;
}

int modeldir_resident(const mh_dir *d, int i, const mh_tensor *out[3])
{
	int n = 0;
	for (int k = 0; k < d->n_conv && n < 2; k++)
		if (d->conv[k].src == i)
			out[n++] = d->conv[k].t;
	if (!d->replaced || !d->replaced[i])
		out[n++] = d->index[i];
	return n;
}

int modeldir_changed(const mh_dir *d, char *err)
{
	for (int i = 0; i < d->n_shards; i++)
		if (st_changed(&d->shards[i], err))
			return 1;
	return 0;
}

void modeldir_close(mh_dir *d)
{
	if (!d)
		return;
	if (d->on_close)
		d->on_close(d);
	for (int i = 0; i < d->n_shards; i++)
		st_close(&d->shards[i]);
	for (int i = 0; i < d->n_vec_copies; i++)
		free(d->vec_copies[i]);
	free(d->vec_copies);
	for (int i = 0; i < d->n_conv; i++) {
		free((void *)d->conv[i].t->data);
		free(d->conv[i].t);
	}
	free(d->conv);
	free(d->replaced);
	free(d->shards);
	free(d->index);
	free(d->index_shard);
	cJSON_Delete(d->config);
	cJSON_Delete(d->generation);
	free(d->path);
	free(d);
}

static int find_index(const mh_dir *d, const char *name)
{
	int lo = 0, hi = d->n_tensors - 1;
	while (lo <= hi) {
		int mid = (lo + hi) / 2, c = strcmp(name, d->index[mid]->name);
		if (c == 0)
			return mid;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -1;
}

int modeldir_find(const mh_dir *d, const char *name)
{
	return find_index(d, name);
}

const mh_tensor *modeldir_tensor(const mh_dir *d, const char *name)
{
	int i = find_index(d, name);
	return i < 0 ? NULL : d->index[i];
}

const char *modeldir_file_of(const mh_dir *d, const mh_tensor *t)
{
	if (t) {
		for (int i = 0; i < d->n_shards; i++)
			if (t >= d->shards[i].tensors && t < d->shards[i].tensors + d->shards[i].n) {
				const char *s = strrchr(d->shards[i].path, '/');
				return s ? s + 1 : d->shards[i].path;
			}
	}
	return d->n_shards == 1 ? "model.safetensors" : "model.safetensors.index.json";
}

const cJSON *modeldir_config(const mh_dir *d, const char *key)
{
	const cJSON *j = d->config;
	char part[128];
	while (j && *key) {
		size_t n = strcspn(key, ".");
		if (n >= sizeof part)
			return NULL;
		memcpy(part, key, n);
		part[n] = 0;
		key += n + (key[n] == '.');
		if (cJSON_IsArray(j)) {
			char *end;
			long i = strtol(part, &end, 10);
			j = (*end || i < 0) ? NULL : cJSON_GetArrayItem(j, (int)i);
		} else if (cJSON_IsObject(j)) {
			j = cJSON_GetObjectItemCaseSensitive(j, part);
		} else {
			j = NULL;
		}
	}
	return cJSON_IsNull(j) ? NULL : j;
}

const char *modeldir_architecture(const mh_dir *d)
{
	const cJSON *a = modeldir_config(d, "architectures.0");
	if (cJSON_IsString(a))
		return a->valuestring;
	a = modeldir_config(d, "model_type");
	return cJSON_IsString(a) ? a->valuestring : NULL;
}

void modeldir_error(mh_dir *d, const char *file, const char *fmt, ...)
{
	if (d->err[0])
		return;
	char msg[MH_ERRLEN / 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (file)
		snprintf(d->err, sizeof d->err, "%.160s/%.60s: %s", d->path, file, msg);
	else
		snprintf(d->err, sizeof d->err, "%.200s: %s", d->path, msg);
	mh_one_line(d->err);
}
