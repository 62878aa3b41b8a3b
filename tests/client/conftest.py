"""Collecting ``tests/client`` first checks the gmqtt private names the transport relies
on (:mod:`sim.customer.client.gmqtt_private` checks them when imported): a gmqtt that
changed one stops the collection with a message naming it."""

from sim.customer.client import gmqtt_private

gmqtt_private.check()
