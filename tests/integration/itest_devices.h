/** Contract §4/§5: devices, pairing and the MQTT link (tests/integration/test_devices.c). */
#ifndef INKLET_ITEST_DEVICES_H
#define INKLET_ITEST_DEVICES_H

/** Runs the device groups; returns the number of failed tests. Needs INKLET_ITEST_MQTT_URL (the
 *  group is skipped without it); the broker outage test also needs INKLET_ITEST_MQTT_STOP and
 *  INKLET_ITEST_MQTT_START, the simulator test build/inklet-sim (or INKLET_ITEST_SIM). */
int itest_group_devices(void);
/** The broker link over TLS with client certificates (test_mqtts.c); runs its own broker. */
int itest_group_mqtts(void);

#endif
