CREATE TABLE instance_keys (
	id VARCHAR(32) NOT NULL, 
	host VARCHAR(255) NOT NULL, 
	pid INTEGER NOT NULL, 
	keys TEXT NOT NULL, 
	started_at DATETIME NOT NULL, 
	seen_at DATETIME NOT NULL, 
	process VARCHAR(120), 
	ended_at DATETIME, 
	PRIMARY KEY (id)
);

CREATE TABLE key_check (
	id INTEGER NOT NULL, 
	token BLOB NOT NULL, 
	PRIMARY KEY (id)
);

CREATE TABLE retired_keys (
	fingerprint VARCHAR(16) NOT NULL, 
	retired_at DATETIME NOT NULL, 
	PRIMARY KEY (fingerprint)
);

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
	confirmed_at DATETIME, 
	confirmation_token_digest VARCHAR(64), 
	confirmation_sent_at DATETIME, 
	reset_password_token_digest VARCHAR(64), 
	reset_password_sent_at DATETIME, 
	failed_attempts INTEGER DEFAULT 0 NOT NULL, 
	unlock_token_digest VARCHAR(64), 
	locked_at DATETIME, 
	otp_enabled_at DATETIME, 
	otp_secret_ciphertext BLOB, 
	otp_last_step BIGINT, 
	PRIMARY KEY (id), 
	UNIQUE (email), 
	UNIQUE (api_token_digest)
);

CREATE UNIQUE INDEX ix_users_confirmation_token_digest ON users (confirmation_token_digest);

CREATE UNIQUE INDEX ix_users_reset_password_token_digest ON users (reset_password_token_digest);

CREATE UNIQUE INDEX ix_users_unlock_token_digest ON users (unlock_token_digest);

CREATE TABLE otp_backup_codes (
	id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX ix_otp_backup_codes_user_id ON otp_backup_codes (user_id);

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

CREATE INDEX ix_pushes_expired_on ON pushes (expired_on) WHERE expired_on IS NOT NULL;

CREATE INDEX ix_pushes_user_expired_created ON pushes (user_id, expired, created_at) WHERE user_id IS NOT NULL;

CREATE TABLE user_sessions (
	digest VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (digest), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);

CREATE INDEX ix_user_sessions_user_id ON user_sessions (user_id);

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

CREATE TABLE notify_by_emails (
	id INTEGER NOT NULL, 
	push_id INTEGER NOT NULL, 
	audit_log_id INTEGER, 
	user_id INTEGER, 
	recipients VARCHAR(1300) NOT NULL, 
	locale VARCHAR(16) NOT NULL, 
	base_url TEXT NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	successful_sends VARCHAR(1300), 
	error_message VARCHAR(1000), 
	proceed_at DATETIME, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(push_id) REFERENCES pushes (id) ON DELETE CASCADE, 
	FOREIGN KEY(audit_log_id) REFERENCES audit_logs (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE SET NULL
);

CREATE INDEX ix_notify_by_emails_audit_log_id ON notify_by_emails (audit_log_id);

CREATE INDEX ix_notify_by_emails_push_id ON notify_by_emails (push_id);

CREATE INDEX ix_notify_by_emails_status_created ON notify_by_emails (status, created_at);

CREATE INDEX ix_notify_by_emails_user_created ON notify_by_emails (user_id, created_at);

CREATE TABLE push_file_parts (
	id INTEGER NOT NULL, 
	file_id INTEGER NOT NULL, 
	ciphertext BLOB NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(file_id) REFERENCES push_files (id) ON DELETE CASCADE
);

CREATE INDEX ix_push_file_parts_file_id ON push_file_parts (file_id);
