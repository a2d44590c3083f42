# The drizzle 1.0 release candidates the checks run against: the newest on npm
# when this was written. Sourced by the scripts that install them; set these
# variables to try others.
DRIZZLE1_ORM_VERSION=${DRIZZLE1_ORM_VERSION:-1.0.0-rc.5}
DRIZZLE1_KIT_VERSION=${DRIZZLE1_KIT_VERSION:-1.0.0-rc.5}
