/*
 * The Display page: one column per cluster member (MEMBERS, in ring order), each with the
 * member's live connections and the chatter it observes. Needs thywill.js loaded first; no
 * inline script. A template rendered at start-up (example_display::script): the server writes
 * the application id and the members in as JSON.
 *
 * Test hooks: window.displayReceived holds every message received (its data), in order.
 */
(function () {
  'use strict';

  var APPLICATION_ID = {{ application_id }};
  var MEMBERS = {{ members }};
  var MAX_LINES = 500;
  var STATUS_TEXT = {
    connecting: 'Connecting...',
    connected: 'Connected',
    disconnected: 'Disconnected'
  };

  function pad(n) {
    return n < 10 ? '0' + n : String(n);
  }

  /** "[HH:MM:ss]" of now. */
  function timestamp() {
    var d = new Date();
    return '[' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + ']';
  }

  class DisplayInterface extends Thywill.ApplicationInterface {
    constructor(ui) {
      super(APPLICATION_ID);
      this.ui = ui;
      this.received_ = [];
      window.displayReceived = this.received_;
      MEMBERS.forEach(this.column, this);
    }

    connecting() {
      if (this.ui.status.className !== 'disconnected') {
        this.showStatus('connecting');
      }
    }

    connected() {
      this.showStatus('connected');
    }

    disconnected() {
      this.showStatus('disconnected');
      this.clearConnections();
    }

    connectionFailure() {
      this.showStatus('disconnected');
      this.clearConnections();
    }

    received(message) {
      var data = message.data || {};
      this.received_.push(data);
      if (data.presence) {
        this.presence(data);
        return;
      }
      var self = this;
      switch (data.type) {
        case 'connectionList':
          Object.keys(data.connections || {}).forEach(function (member) {
            (data.connections[member] || []).forEach(function (id) {
              self.addConnection(member, id);
            });
          });
          break;
        case 'connection':
          this.addConnection(data.clusterMemberId, data.connectionId);
          break;
        case 'disconnection':
          this.removeConnection(data.connectionId);
          break;
        case 'text':
          this.addText(data.clusterMemberId, data.text);
          break;
        case 'connectionCount':
          this.connectionCount(data);
          break;
        case 'disconnectionList':
          Object.keys(data.connections || {}).forEach(function (member) {
            var ids = data.connections[member] || [];
            ids.forEach(function (id) {
              self.removeConnection(id);
            });
            self.addText(member, ids.length + ' connection(s) lost with ' + member + '.');
          });
          break;
        default:
          break;
      }
    }

    /** The column of a member, created if needed. */
    column(member) {
      var existing = document.getElementById(member);
      if (existing && existing.classList.contains('cluster-member')) {
        return existing;
      }
      var div = document.createElement('div');
      div.className = 'cluster-member';
      div.id = member;
      var name = document.createElement('span');
      name.className = 'name';
      name.textContent = member;
      var messages = document.createElement('ul');
      messages.className = 'messages';
      var connections = document.createElement('ul');
      connections.className = 'connections';
      div.appendChild(name);
      div.appendChild(messages);
      div.appendChild(connections);
      this.ui.displays.appendChild(div);
      return div;
    }

    addConnection(member, connectionId) {
      if (typeof member !== 'string' || typeof connectionId !== 'string') {
        return;
      }
      var list = this.column(member).querySelector('ul.connections');
      var exists = Array.prototype.some.call(list.children, function (li) {
        return li.id === connectionId;
      });
      if (exists) {
        return;
      }
      var li = document.createElement('li');
      li.id = connectionId;
      li.textContent = connectionId;
      list.appendChild(li);
    }

    removeConnection(connectionId) {
      document.querySelectorAll('#displays ul.connections > li').forEach(function (li) {
        if (li.id === connectionId) {
          li.remove();
        }
      });
    }

    clearConnections() {
      document.querySelectorAll('#displays ul.connections > li').forEach(function (li) {
        li.remove();
      });
    }

    addText(member, text) {
      if (typeof member !== 'string') {
        return;
      }
      var list = this.column(member).querySelector('ul.messages');
      var li = document.createElement('li');
      var time = document.createElement('span');
      time.className = 'timestamp';
      time.textContent = timestamp();
      var span = document.createElement('span');
      span.className = 'text';
      span.textContent = String(text);
      li.appendChild(time);
      li.appendChild(span);
      list.appendChild(li);
      while (list.children.length > MAX_LINES) {
        list.removeChild(list.firstChild);
      }
      list.scrollTop = list.scrollHeight;
    }

    /** Presence of the display's presence channel: how many are here, cluster-wide. */
    presence(data) {
      if (!this.present || data.presence === 'state') {
        this.present = {};
      }
      var present = this.present;
      if (data.presence === 'state') {
        (data.sessions || []).forEach(function (s) {
          present[s] = true;
        });
      } else if (data.presence === 'join') {
        present[data.session] = true;
      } else if (data.presence === 'leave') {
        delete present[data.session];
      }
      this.ui.presence.textContent = 'Present: ' + Object.keys(present).length;
    }

    /**
     * A connection count one member asked another for (an application task between members):
     * one line per asked member in #connection-counts, replaced by each new answer.
     */
    connectionCount(data) {
      if (typeof data.member !== 'string' || typeof data.clusterMemberId !== 'string') {
        return;
      }
      var list = this.ui.counts;
      var li = Array.prototype.find.call(list.children, function (item) {
        return item.dataset.member === data.member;
      });
      if (!li) {
        li = document.createElement('li');
        li.className = 'connection-count';
        li.dataset.member = data.member;
        list.appendChild(li);
      }
      var asked = ' (asked by ' + data.clusterMemberId + ' at ' + timestamp() + ')';
      if (typeof data.connections === 'number') {
        li.classList.remove('unreachable');
        li.textContent = data.member + ' holds ' + data.connections + ' connection(s)' + asked;
      } else {
        li.classList.add('unreachable');
        li.textContent = data.member + ' could not be asked: ' + String(data.error) + asked;
      }
    }

    showStatus(state) {
      this.ui.status.className = state;
      this.ui.status.textContent = STATUS_TEXT[state];
    }
  }

  function start() {
    new DisplayInterface({
      status: document.getElementById('status'),
      displays: document.getElementById('displays'),
      presence: document.getElementById('presence'),
      counts: document.getElementById('connection-counts')
    });
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
