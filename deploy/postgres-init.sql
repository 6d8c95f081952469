-- One database per service (a service never reads another's tables); run once, on first start.
CREATE DATABASE orders;
CREATE DATABASE inventory;
CREATE DATABASE billing;
CREATE DATABASE notification;
