-- pwpush's first release (6336030, 2026-11-27) on sqlite: its schema.sql, before the partial indexes
-- (5d44fff) and the key_check, push_file_parts, notify_by_emails and user_sessions tables.
CREATE TABLE throttles (
	"key" VARCHAR(64) NOT NULL, 
	window BIGINT NOT NULL, 
	count INTEGER NOT NULL, 
	PRIMARY KEY ("key", window)
);

CREATE TABLE users (
	id INTEGER NOT NULL, 
	email VARCHAR(255) NOT NULL, 
	password_hash VARCHAR(255), 
	api_token_digest VARCHAR(64), 
	is_admin BOOLEAN DEFAULT 0 NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (email), 
	UNIQUE (api_token_digest)
);

CREATE TABLE pushes (
	id INTEGER NOT NULL, 
	kind SMALLINT NOT NULL, 
	url_token VARCHAR(32) NOT NULL, 
	user_id INTEGER, 
	name VARCHAR(255) NOT NULL, 
	expire_after_days INTEGER NOT NULL, 
	expire_after_views INTEGER NOT NULL, 
	expires_at DATETIME NOT NULL, 
	view_count INTEGER NOT NULL, 
	expired BOOLEAN NOT NULL, 
	expired_on DATETIME, 
	deleted BOOLEAN NOT NULL, 
	deletable_by_viewer BOOLEAN, 
	retrieval_step BOOLEAN NOT NULL, 
	payload_ciphertext BLOB, 
	note_ciphertext BLOB, 
	passphrase_salt BLOB, 
	passphrase_verifier BLOB, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (url_token), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE INDEX ix_pushes_expired_expires_at ON pushes (expired, expires_at);

CREATE INDEX ix_pushes_expired_on ON pushes (expired_on);

CREATE INDEX ix_pushes_user_expired_created ON pushes (user_id, expired, created_at);

CREATE TABLE audit_logs (
	id INTEGER NOT NULL, 
	push_id INTEGER NOT NULL, 
	user_id INTEGER, 
	kind SMALLINT NOT NULL, 
	ip VARCHAR(64) NOT NULL, 
	user_agent VARCHAR(255) NOT NULL, 
	referrer VARCHAR(255) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(push_id) REFERENCES pushes (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE INDEX ix_audit_logs_push_id_id ON audit_logs (push_id, id);

CREATE TABLE push_files (
	id INTEGER NOT NULL, 
	push_id INTEGER NOT NULL, 
	filename VARCHAR(255) NOT NULL, 
	content_type VARCHAR(255) NOT NULL, 
	size INTEGER NOT NULL, 
	ciphertext BLOB NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(push_id) REFERENCES pushes (id) ON DELETE CASCADE
);

CREATE INDEX ix_push_files_push_id ON push_files (push_id);
