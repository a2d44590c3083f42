CREATE TABLE "shop_email_log" (
	"job_id" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"ref" text NOT NULL,
	"mail_key" text NOT NULL,
	"sent_at" timestamp with time zone DEFAULT now() NOT NULL
);
