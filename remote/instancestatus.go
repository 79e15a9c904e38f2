package remote

import (
	"context"
)

// InstanceStatus is the Vast.ai part of Status — state, price, running
// time and cost — without connecting to the host over SSH, so that it can
// be polled often while the tunnel already shows whether the engine
// answers. For a plain SSH host it returns just the Target.
func (m *Manager) InstanceStatus(ctx context.Context, name string) (*Status, error) {
	t, err := m.Resolve(name)
	if err != nil {
		return nil, err
	}
	st := &Status{Target: t, DPH: t.DPH}
	if t.Kind != KindVast {
		return st, nil
	}
	vc, err := m.Vast()
	if err == nil {
		st.Instance, err = vc.ShowInstance(ctx, t.InstanceID)
	}
	st.InstanceErr = err
	if st.Instance != nil {
		st.DPH = st.Instance.DPHTotal
		started := st.Instance.Started()
		if started.IsZero() {
			started = t.CreatedAt
		}
		st.Uptime = max(m.cfg.Now().Sub(started), 0)
		st.Cost = st.DPH * st.Uptime.Hours()
	}
	return st, nil
}
